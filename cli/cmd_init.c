/* cmd_init.c — placeholder. */
#include "cli.h"

int v3_cmd_init(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return v3_cli_fail("init", "not implemented yet");
}
