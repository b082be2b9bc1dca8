/* fetch_upload.c: an upload's request body: a range (offset, length) of a committed file,
 * read as libcurl asks for it, so an object of any size is never held in memory, and read
 * again from the range's start when libcurl rewinds (a redirect, a retried connection). */
#include "fetch_internal.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <errno.h>
#include <string.h>

/* The reads are on the loop, not the thread pool as a download's writes are: libcurl asks
 * for at most its upload buffer (64 KiB) at a time, the file was just committed and is in the
 * page cache, and a pread of it costs less than the handoff would. */
int fetch_upload_open(fetch_xfer *x) {
    const fetch_request *r = &x->req;
    struct stat st;
    int fd = open(r->upload_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        fetch_fail(x, "disk", "open %s for upload: %s (%s)", r->upload_path, strerror(err),
                   strerrorname_np(err) ? strerrorname_np(err) : "?");
        return -1;
    }
    if (r->upload_offset < 0 || r->upload_length < 0 || r->upload_offset + r->upload_length > st.st_size) {
        close(fd);
        fetch_fail(x, "invalid", "upload of %s: bytes %lld..%lld lie past its end (%lld bytes)", r->upload_path,
                   (long long)r->upload_offset, (long long)(r->upload_offset + r->upload_length),
                   (long long)st.st_size);
        return -1;
    }
    x->upload_fd = fd;
    x->res.uploaded = 0;
    return 0;
}

size_t fetch_upload_read(char *buf, size_t size, size_t n, void *ud) {
    fetch_xfer *x = ud;
    int64_t left = x->req.upload_length - x->res.uploaded;
    size_t want = size * n;
    if (x->cancel_requested) return CURL_READFUNC_ABORT;
    if (left <= 0) return 0;
    if ((int64_t)want > left) want = (size_t)left;
    ssize_t got;
    do got = pread(x->upload_fd, buf, want, x->req.upload_offset + x->res.uploaded);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        /* a file that shrank under us is as wrong as one that cannot be read */
        int err = got < 0 ? errno : ENODATA;
        fetch_fail(x, "disk", "read %s for upload at byte %lld: %s", x->req.upload_path,
                   (long long)(x->req.upload_offset + x->res.uploaded), strerror(err));
        return CURL_READFUNC_ABORT;
    }
    x->res.uploaded += got;
    return (size_t)got;
}

int fetch_upload_seek(void *ud, curl_off_t offset, int origin) {
    fetch_xfer *x = ud;
    if (origin != SEEK_SET || offset < 0 || offset > x->req.upload_length) return CURL_SEEKFUNC_CANTSEEK;
    x->res.uploaded = offset;
    return CURL_SEEKFUNC_OK;
}
