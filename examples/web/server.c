/*
 * A minimal HTTP/1.0 server for the web example: answers every request on
 * ADDRESS:PORT with the contents of FILE, one connection at a time.
 *
 * usage: server ADDRESS PORT FILE
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in addr;
	char body[65536], header[256], request[4096];
	size_t body_len;
	FILE *file;
	int one = 1, listener;

	if (argc != 4) {
		fprintf(stderr, "usage: server ADDRESS PORT FILE\n");
		return 2;
	}
	file = fopen(argv[3], "r");
	if (file == NULL) {
		perror(argv[3]);
		return 1;
	}
	body_len = fread(body, 1, sizeof(body), file);
	fclose(file);

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "server: invalid IPv4 address %s\n", argv[1]);
		return 2;
	}
	listener = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(listener, 16) != 0) {
		perror("server: bind");
		return 1;
	}
	printf("server: listening on %s:%s\n", argv[1], argv[2]);
	fflush(stdout);

	for (;;) {
		int client = accept(listener, NULL, NULL);
		if (client < 0)
			continue;
		/* The request is read only to be polite; every path gets FILE. */
		(void)read(client, request, sizeof(request));
		snprintf(header, sizeof(header),
		    "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
		if (send_all(client, header, strlen(header)) == 0)
			send_all(client, body, body_len);
		close(client);
	}
}
