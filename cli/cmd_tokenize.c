/* cmd_tokenize.c — placeholder until its issue lands (owned by the helper implementing it). */
#include "cli.h"

int v3_cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return v3_cli_fail("tokenize", "not implemented yet");
}
