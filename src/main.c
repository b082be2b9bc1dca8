/* main.c: the command line, start-up, signals and the orderly stop. Everything the daemon does
 * happens on one libuv loop; this file builds it, runs it, and takes it apart in the order
 * libcurl and libuv require (multi handle first, then handles, then the Lua state). */
#include "fetch.h"
#include "lineio.h"
#include "lmodules.h"
#include "log.h"
#include "repl.h"
#include "runtime.h"
#include "sdnotify.h"

#include <curl/curl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* --listen's default is lua/assetd/defaults.lua's http.listen, shown here for the user:
 * cli_spec checks the two agree. */
static const char usage_text[] =
    "usage: assetd SCRIPT.lua [options] [script args...]\n"
    "       assetd attach [SOCKET | --data DIR]\n"
    "       assetd --check PIPELINE.lua\n"
    "       assetd --help | --version\n"
    "\n"
    "Runs SCRIPT.lua (a pipeline or any Lua script) on assetd's event loop.\n"
    "\n"
    "options (before or after the script; `--` ends them):\n"
    "  -i                    interactive Lua REPL on the terminal while the daemon runs\n"
    "  --listen HOST:PORT    HTTP API address (default 127.0.0.1:8787)\n"
    "  --data DIR            data directory: job database, attach socket (default ./.assetd)\n"
    "  --database URL        a postgres:// URL: the job store shared by several daemons\n"
    "  --log-level LEVEL     debug, info, warn or error (default info)\n"
    "  --log-format FORMAT   logfmt or json (default logfmt)\n"
    "  --check               load and validate the pipeline, print its configuration, exit\n"
    "\n"
    "environment: OPENAI_API_KEY OPENAI_BASE_URL NOTION_TOKEN NOTION_BASE_URL\n"
    "             OPENAI_WEBHOOK_SECRET ASSETD_API_TOKEN ASSETD_DATABASE_URL ASSETD_INSTANCE\n"
    "exit status: 0 clean stop, 1 runtime or script error, 2 bad usage\n";

static rt_runtime runtime;
static uv_signal_t sig_int, sig_term, sig_hup;

static int usage_error(const char *what, const char *arg) {
    fprintf(stderr, "assetd: %s%s\n%s", what, arg, usage_text);
    return 2;
}

/* Daemon options are taken wherever they stand before `--`; the first other word is the
 * script and the remaining words are the script's arguments (as `lua` passes them). */
static int parse_args(int argc, char **argv, struct rt_options *o, int *script_index,
                      char ***script_args, int *nscript_args) {
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0, opts_done = 0;
    *script_index = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int takes_value = !opts_done && (!strcmp(a, "--listen") || !strcmp(a, "--data") || !strcmp(a, "--database") ||
                                         !strcmp(a, "--log-level") || !strcmp(a, "--log-format"));
        if (takes_value && i + 1 >= argc) { free(rest); return usage_error("missing value after ", a); }
        if (!opts_done && !strcmp(a, "--")) opts_done = 1;
        else if (!opts_done && !strcmp(a, "-i")) o->interactive = 1;
        else if (!opts_done && !strcmp(a, "--check")) o->check = 1;
        else if (takes_value && !strcmp(a, "--listen")) o->listen = argv[++i];
        else if (takes_value && !strcmp(a, "--data")) o->data = argv[++i];
        else if (takes_value && !strcmp(a, "--database")) o->database = argv[++i];
        else if (takes_value && !strcmp(a, "--log-level")) o->log_level = argv[++i];
        else if (takes_value && !strcmp(a, "--log-format")) o->log_format = argv[++i];
        else if (*script_index < 0 && !opts_done && a[0] == '-' && a[1] != '\0') { free(rest); return usage_error("unknown option ", a); }
        else if (*script_index < 0) *script_index = i;
        else rest[nrest++] = argv[i];
    }
    if (*script_index < 0) { free(rest); return usage_error("no script given", ""); }
    *script_args = rest;
    *nscript_args = nrest;
    return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
    rt_runtime *rt = h->data;
    log_event(LOG_INFO, "stopping", "signal", signum == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    rt_stop(rt, 0);
}

/* SIGHUP: the pipeline module reloads the script in a task of its own (its policy: what may
 * change without a restart); nothing here touches the running jobs. */
static void on_hangup(uv_signal_t *h, int signum) {
    rt_runtime *rt = h->data;
    lua_State *L = rt->L;
    if (rt->stopping) return;
    log_event(LOG_INFO, "reloading", "signal", "SIGHUP", NULL);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "assetd.pipeline");
    if (rt_pcall(L, 1, 1, "SIGHUP") != LUA_OK) return;
    lua_getfield(L, -1, "on_sighup");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) { lua_pop(L, 1); return; }
    rt_spawn(L, 0, 0, "reload", RT_DETACHED);
    lua_pop(L, 1);                                /* the task handle */
}

/* With no callback: right only for handles whose memory outlives the loop (statics, userdata
 * that lua_close frees). An owner that frees its handles' memory from their close callbacks
 * closes them before this walk: the engine and the REPL here in wind_down, the others (HTTP
 * servers) through an rt_closer, which rt_stop runs. */
static void close_any(uv_handle_t *h, void *arg) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Stop taking work: transfers are abandoned with their .part files kept for a resume. */
static void wind_down(rt_runtime *rt) {
    sdnotify_send("STOPPING=1");
    fetch_engine_close(rt->fetch);
    rt->fetch = NULL;
    repl_shutdown(rt->repl);
    uv_walk(rt->loop, close_any, NULL);
}

/* A Lua tree on disk that wins over the modules built into the binary, module by module (so
 * editing one needs no rebuild): ASSETD_LUA_PATH (set but empty: none), else lua/ beside the
 * binary (the checkout), else none: an installed binary runs its own copy and never another
 * version's. *BAD is set when ASSETD_LUA_PATH names no directory. */
static const char *find_luadir(char *buf, size_t cap, int *bad) {
    const char *env = getenv("ASSETD_LUA_PATH");
    struct stat st;
    *bad = 0;
    if (env) {
        if (!*env) return NULL;
        if (stat(env, &st) != 0 || !S_ISDIR(st.st_mode)) *bad = 1;
        return env;
    }
    char exe[4096];
    size_t n = sizeof exe;
    if (uv_exepath(exe, &n) != 0) return NULL;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    int len = snprintf(buf, cap, "%s/lua/assetd/init.lua", exe);
    if (len < 0 || (size_t)len >= cap || stat(buf, &st) != 0) return NULL;
    buf[(size_t)len - strlen("/assetd/init.lua")] = '\0';
    return buf;
}

static int setup_logging(const struct rt_options *o) {
    enum log_level level;
    enum log_format format;
    if (log_parse_level(o->log_level, &level) != 0)
        return usage_error("--log-level must be debug, info, warn or error, not ", o->log_level);
    if (log_parse_format(o->log_format, &format) != 0)
        return usage_error("--log-format must be logfmt or json, not ", o->log_format);
    log_configure(level, format, stderr);
    return 0;
}

/* With the REPL on a terminal, SIGINT (Ctrl-C) belongs to the REPL: it clears the line or
 * interrupts the running chunk, and never stops the daemon. */
static int start_signals(uv_loop_t *loop, rt_runtime *rt, int with_sigint) {
    int err = uv_signal_init(loop, &sig_int) || uv_signal_init(loop, &sig_term) ||
              uv_signal_init(loop, &sig_hup) ||
              (with_sigint && uv_signal_start(&sig_int, on_signal, SIGINT)) ||
              uv_signal_start(&sig_term, on_signal, SIGTERM) ||
              uv_signal_start(&sig_hup, on_hangup, SIGHUP);
    sig_int.data = sig_term.data = sig_hup.data = rt;
    uv_unref((uv_handle_t *)&sig_int);
    uv_unref((uv_handle_t *)&sig_term);
    uv_unref((uv_handle_t *)&sig_hup);
    return err;
}

static int run(char **argv, struct rt_options *opts, int script_index, char **args, int nargs) {
    static char luadir_buf[4096];
    uv_loop_t *loop = uv_default_loop();
    rt_runtime *rt = &runtime;
    int bad_luadir;
    const char *luadir = find_luadir(luadir_buf, sizeof luadir_buf, &bad_luadir);
    if (bad_luadir) {
        fprintf(stderr, "assetd: ASSETD_LUA_PATH=%s is not a directory\n", luadir);
        return 1;
    }
    if (rt_init(rt, loop, luadir) != 0) {
        fprintf(stderr, "assetd: cannot create the Lua state\n");
        return 1;
    }
    l_openlibs(rt->L, luadir);
    rt->opts = *opts;
    rt->on_stop = wind_down;
    int with_repl = opts->interactive && !opts->check;
    if (fetch_engine_new(loop, &rt->fetch) != 0 || repl_new(rt, &rt->repl) != 0 ||
        start_signals(loop, rt, !(with_repl && lineio_stdin_is_terminal())) != 0) {
        fprintf(stderr, "assetd: cannot start the event loop\n");
        return 1;
    }
    /* `arg` as lua sets it: arg[-1] the program, arg[0] the script, then its arguments */
    char **sargv = calloc((size_t)nargs + 3, sizeof *sargv);
    if (!sargv) return 1;
    sargv[0] = argv[0];
    sargv[1] = argv[script_index];
    for (int i = 0; i < nargs; i++) sargv[i + 2] = args[i];
    if (rt_run_main(rt, argv[script_index], nargs + 2, sargv, 1) != 0) rt_stop(rt, 1);
    free(sargv);
    if (with_repl && !rt->stopping && repl_start_terminal(rt->repl) != 0) {
        fprintf(stderr, "assetd: cannot start the REPL\n");
        rt_stop(rt, 1);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    rt_stop(rt, rt->exit_code);           /* no work left: wind down if nobody did */
    while (uv_loop_close(loop) == UV_EBUSY) uv_run(loop, UV_RUN_DEFAULT);
    int code = rt->exit_code;
    rt_close(rt);
    repl_free(rt->repl);
    return code;
}

int main(int argc, char **argv) {
    struct rt_options opts = {.data = "./.assetd", .log_level = "info", .log_format = "logfmt"};
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("assetd %s (%s, libuv %s, %s)\n", ASSETD_VERSION, LUA_RELEASE, uv_version_string(),
               curl_version());
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "attach")) return attach_main(argc - 1, argv + 1);
    int script_index = -1, nargs = 0;
    char **args = NULL;
    if (parse_args(argc, argv, &opts, &script_index, &args, &nargs) != 0) return 2;
    if (setup_logging(&opts) != 0) { free(args); return 2; }
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "assetd: curl_global_init failed\n");
        free(args);
        return 1;
    }
    int code = run(argv, &opts, script_index, args, nargs);
    free(args);
    curl_global_cleanup();
    return code;
}
