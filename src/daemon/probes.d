/*
 * USDT provider of cblockd, with the probe names and arguments of the
 * original cblocks daemon. Strings are instance ids and the cleanup type
 * ("regular" for launched containers, "build" for build jobs).
 */
provider cblockd {
	probe cblock_create(char *);
	probe cblock_destroy(char *, int32_t);
	probe cblock_cleanup(char *, int32_t, char *);
	probe cblock_console_attach(char *);
	probe cblock_console_detach(char *);
};
