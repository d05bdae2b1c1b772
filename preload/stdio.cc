#include "preload/stdio.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "preload/conn.h"
#include "preload/real.h"

namespace usmc::preload {
namespace {

struct SmcStream {
  int fd;
  FILE* f = nullptr;
  bool open = true;
};

std::mutex g_mu;
std::vector<SmcStream*>& Streams() {
  static auto* v = new std::vector<SmcStream*>;  // used at exit
  return *v;
}

// read/write here are the interposer's own wrappers (this library's
// definitions): SMC-D or TCP, as for the app's own calls.
ssize_t StreamRead(void* c, char* buf, size_t n) {
  ssize_t r;
  do {
    r = ::read(static_cast<SmcStream*>(c)->fd, buf, n);
  } while (r < 0 && errno == EINTR);
  return r;
}

// A cookie write must take everything (a short count marks the stream in
// error), as glibc's own loop over write(2) does.
ssize_t StreamWrite(void* c, const char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::write(static_cast<SmcStream*>(c)->fd, buf + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

int StreamClose(void* c) {
  auto* s = static_cast<SmcStream*>(c);
  {
    std::lock_guard lock(g_mu);
    s->open = false;
  }
  return ::close(s->fd);
}

FILE* Wrap(int fd, const char* mode) {
  auto* s = new SmcStream{fd};
  cookie_io_functions_t io{StreamRead, StreamWrite, nullptr, StreamClose};
  FILE* f = ::fopencookie(s, mode, io);
  if (f == nullptr) {
    delete s;
    return nullptr;
  }
  f->_fileno = fd;  // fileno() as on the stream it stands for
  s->f = f;
  std::lock_guard lock(g_mu);
  Streams().push_back(s);
  return f;
}

}  // namespace

void WrapStdStreamsOnSmc() {
  if (table().Tracks(0)) {
    if (FILE* f = Wrap(0, "r")) stdin = f;
  }
  if (table().Tracks(1)) {
    if (FILE* f = Wrap(1, "w")) stdout = f;
  }
  if (table().Tracks(2)) {
    if (FILE* f = Wrap(2, "w")) {
      ::setvbuf(f, nullptr, _IONBF, 0);
      stderr = f;
    }
  }
}

void FlushSmcStreams() {
  std::vector<FILE*> open;
  {
    std::lock_guard lock(g_mu);
    for (SmcStream* s : Streams()) {
      if (s->open) open.push_back(s->f);
    }
  }
  for (FILE* f : open) ::fflush(f);
}

}  // namespace usmc::preload

extern "C" FILE* fdopen(int fd, const char* mode) {
  using Fn = FILE* (*)(int, const char*);
  static Fn next = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "fdopen"));
  // A connection that is TCP for good keeps glibc's own stream (whose
  // reads are the C library's own, not ours: a late CLC message still to
  // drop would reach the app, so such a connection gets our stream).
  std::shared_ptr<usmc::preload::Conn> c =
      usmc::preload::Bypass() ? nullptr : usmc::preload::table().Lookup(fd);
  if (c && !c->PassThrough(fd, /*read=*/true)) {
    if (usmc::preload::real().fcntl(fd, F_GETFL) < 0) return nullptr;  // EBADF
    return usmc::preload::Wrap(fd, mode);
  }
  return next(fd, mode);
}
