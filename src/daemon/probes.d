/*
 * USDT provider of cblockd, with the probe names and arguments of the
 * original cblocks daemon. Strings are instance ids and the cleanup type
 * ("regular" for launched containers, "build" for build jobs). The build
 * step probes, new in cblocks, carry the build id, the step number and the
 * instruction, then the step's status (0, or the RUN command's exit
 * status); they fire in the build process, which runs the same binary.
 */
provider cblockd {
	probe cblock_create(char *);
	probe cblock_destroy(char *, int32_t);
	probe cblock_cleanup(char *, int32_t, char *);
	probe cblock_console_attach(char *);
	probe cblock_console_detach(char *);
	probe cblock_build_step_start(char *, int32_t, char *);
	probe cblock_build_step_done(char *, int32_t, int32_t);
};
