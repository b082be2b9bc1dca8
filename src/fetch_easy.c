/* fetch_easy.c: a request as a curl easy handle: the options every transfer gets, the
 * caller's method, headers, body (or an upload's file) and timeouts, SigV4 signing, Range and
 * If-Range for a resume, and deny_private, which judges the address actually connected to. */
#include "fetch_internal.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>

char *fetch_url_host(const char *url) {
    CURLU *u = curl_url();
    char *host = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        out = strdup(host);
    curl_free(host);
    curl_url_cleanup(u);
    return out;
}

/* Resume only the same object: a server whose object changed answers 200 with all of it.
 * Added once: a held transfer resumes with the same validator however often it is held. */
static int add_if_range(fetch_xfer *x) {
    if (x->if_range_sent) return 0;
    char line[sizeof x->validator + 16];
    snprintf(line, sizeof line, "If-Range: %s", x->validator);
    struct curl_slist *l = curl_slist_append(x->req.headers, line);
    if (!l) return -1;
    x->req.headers = l;
    x->if_range_sent = 1;
    return 0;
}

/* ---- deny_private ---------------------------------------------------------------------- */

static int private_v4(const unsigned char *a) {
    return a[0] == 0 || a[0] == 10 || a[0] == 127 || a[0] >= 224 ||          /* this net, RFC 1918, loopback, multicast, reserved */
           (a[0] == 100 && (a[1] & 0xc0) == 64) ||                         /* shared (CGNAT) 100.64/10 */
           (a[0] == 169 && a[1] == 254) || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
           (a[0] == 192 && a[1] == 168) || (a[0] == 192 && a[1] == 0 && a[2] == 0) ||
           (a[0] == 198 && (a[1] & 0xfe) == 18);
}

int fetch_private_address(int family, const unsigned char *a) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char zero[12];
    if (family == AF_INET) return private_v4(a);
    if (family != AF_INET6) return 1;
    /* an IPv4 address inside an IPv6 one reaches that IPv4 host: judged as it (:: and ::1 too) */
    if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12) || !memcmp(a, zero, 12)) return private_v4(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) return private_v4(a + 2);                      /* 6to4 */
    return (a[0] & 0xfe) == 0xfc || a[0] == 0xff ||                                   /* ULA, multicast */
           (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0);  /* link-, site-local */
}

/* Records the first refused address, for the error message. */
static int refuse(fetch_xfer *x, int family, const unsigned char *addr) {
    if (!fetch_private_address(family, addr)) return 0;
    if (!x->refused[0]) inet_ntop(family, addr, x->refused, sizeof x->refused);
    return 1;
}

/* Before connecting: a private address is never connected to, whatever the name resolved to
 * (a DNS-rebinding name included), also after a redirect. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    fetch_xfer *x = ud;
    const struct sockaddr *sa = &a->addr;
    if (purpose == CURLSOCKTYPE_IPCXN && sa->sa_family == AF_INET &&
        refuse(x, AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr))
        return CURL_SOCKET_BAD;
    if (purpose == CURLSOCKTYPE_IPCXN && sa->sa_family == AF_INET6 &&
        refuse(x, AF_INET6, (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Before each request, on a new or a reused connection (which open_socket never saw: another
 * transfer may have opened it): the address it is actually connected to. */
static int before_request(void *ud, char *ip, char *local_ip, int port, int local_port) {
    fetch_xfer *x = ud;
    unsigned char a[16];
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, ip, a) != 1) {
        snprintf(x->refused, sizeof x->refused, "%s", ip);
        return CURL_PREREQFUNC_ABORT;
    }
    return refuse(x, family, a) ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

static void set_deny_private(CURL *c, fetch_xfer *x) {
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, before_request);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, x);
}

/* ---- the handle ------------------------------------------------------------------------ */

int fetch_easy_setup(fetch_xfer *x) {
    if (x->range_from > 0 && add_if_range(x) != 0) return -1;
    /* a held transfer's next request gets a fresh handle: nothing of the stopped one's
     * state (a pause among it) carries over */
    CURL *c = curl_easy_init();
    if (!c) return -1;
    if (x->easy) curl_easy_cleanup(x->easy);
    x->easy = c;
    const fetch_request *r = &x->req;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_body_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, fetch_body_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    /* libcurl hands over at most this much at once, which partfile_write requires */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)PARTFILE_BLOCK);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "assetd/" ASSETD_VERSION);
    if (r->deny_private) set_deny_private(c, x);
    if (r->headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    if (r->method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->method && strcmp(r->method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (r->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    }
    if (r->upload_path) {
        /* UPLOAD makes it a PUT with a Content-Length; a custom method (POST) stays as given */
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->upload_length);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, fetch_upload_read);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, fetch_upload_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
    }
    if (r->aws_sigv4) {
        /* libcurl signs what it sends; the payload hash is the caller's x-amz-content-sha256 */
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, r->aws_sigv4);
        curl_easy_setopt(c, CURLOPT_USERNAME, r->aws_key);
        curl_easy_setopt(c, CURLOPT_PASSWORD, r->aws_secret);
    }
    if (r->timeout_ms > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (r->connect_timeout_ms > 0) curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    if (r->low_speed_secs > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, r->low_speed_bytes);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->low_speed_secs);
    }
    if (x->range_from > 0) {
        char range[64];
        snprintf(range, sizeof range, "%lld-", (long long)x->range_from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    return 0;
}
