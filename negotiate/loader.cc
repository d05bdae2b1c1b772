// negotiate/loader.cc: load, pin and attach the negotiation program with
// libbpf (its skeleton is generated at build time from the BPF object).
#include "negotiate/loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "negotiate/usmc_negotiate.skel.h"

namespace usmc::negotiate {
namespace {

// An owned file descriptor (bpf objects, cgroup directories).
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

struct ProgramSpec {
  const char* name;      // as `usmc setup --status` shows it
  const char* prog_pin;  // file names inside the pin directory
  const char* link_pin;
  bpf_attach_type type;
};

constexpr ProgramSpec kPrograms[] = {
    {"sock_ops", "prog_sockops", "link_sockops", BPF_CGROUP_SOCK_OPS},
    {"setsockopt", "prog_setsockopt", "link_setsockopt", BPF_CGROUP_SETSOCKOPT},
    {"getsockopt", "prog_getsockopt", "link_getsockopt", BPF_CGROUP_GETSOCKOPT},
};
constexpr const char* kCountersPin = "map_counters";
constexpr const char* kSkStoragePin = "map_sk";
constexpr const char* kNoEchoPin = "map_noecho";
constexpr const char* kBpffsMount = "/sys/fs/bpf";

std::string PinPath(const std::string& dir, const char* name) {
  return dir + "/" + name;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// libbpf talks only when asked (USMC_DEBUG=1): the verifier log is long.
int LibbpfPrint(enum libbpf_print_level, const char* fmt, va_list args) {
  static const bool debug = std::getenv("USMC_DEBUG") != nullptr;
  return debug ? std::vfprintf(stderr, fmt, args) : 0;
}

Status EnsureBpffs(const std::string& pin_dir) {
  std::filesystem::path parent = std::filesystem::path(pin_dir).parent_path();
  struct statfs fs {};
  if (statfs(parent.c_str(), &fs) == 0 && fs.f_type == BPF_FS_MAGIC)
    return OkStatus();
  if (parent != kBpffsMount)
    return Status(StatusCode::kUnavailable,
                  parent.string() + " is not a bpf filesystem");
  if (mount("bpf", kBpffsMount, "bpf", 0, "mode=0700") != 0)
    return Status::FromErrno(errno, "mount -t bpf bpf /sys/fs/bpf");
  return OkStatus();
}

Status PinPrivate(int fd, const std::string& path) {
  if (bpf_obj_pin(fd, path.c_str()) != 0)
    return Status::FromErrno(errno, "pin " + path);
  // Attaching a pinned program needs only O_RDWR on the pin: root only.
  if (chmod(path.c_str(), 0600) != 0)
    return Status::FromErrno(errno, "chmod 0600 " + path);
  return OkStatus();
}

struct SkeletonDeleter {
  void operator()(usmc_negotiate_bpf* skel) const {
    usmc_negotiate_bpf__destroy(skel);
  }
};
using Skeleton = std::unique_ptr<usmc_negotiate_bpf, SkeletonDeleter>;

Result<Skeleton> LoadSkeleton() {
  libbpf_set_print(LibbpfPrint);
  Skeleton skel(usmc_negotiate_bpf__open_and_load());
  if (!skel)
    return Status::FromErrno(errno,
                             "load the eBPF program (USMC_DEBUG=1 shows the "
                             "verifier log)");
  return skel;
}

std::array<int, 3> ProgramFds(const usmc_negotiate_bpf& skel) {
  return {bpf_program__fd(skel.progs.usmc_sockops),
          bpf_program__fd(skel.progs.usmc_setsockopt),
          bpf_program__fd(skel.progs.usmc_getsockopt)};
}

Status Pin(const usmc_negotiate_bpf& skel, const std::string& pin_dir) {
  std::array<int, 3> progs = ProgramFds(skel);
  std::pair<int, const char*> objects[] = {
      {bpf_map__fd(skel.maps.usmc_counters), kCountersPin},
      {bpf_map__fd(skel.maps.usmc_sk), kSkStoragePin},
      {bpf_map__fd(skel.maps.usmc_noecho), kNoEchoPin},
      {progs[0], kPrograms[0].prog_pin},
      {progs[1], kPrograms[1].prog_pin},
      {progs[2], kPrograms[2].prog_pin},
  };
  for (const auto& [fd, pin] : objects)
    USMC_RETURN_IF_ERROR(PinPrivate(fd, PinPath(pin_dir, pin)));
  return OkStatus();
}

bool SameTag(int a, int b) {
  bpf_prog_info ia{}, ib{};
  uint32_t la = sizeof(ia), lb = sizeof(ib);
  return bpf_obj_get_info_by_fd(a, &ia, &la) == 0 &&
         bpf_obj_get_info_by_fd(b, &ib, &lb) == 0 &&
         std::memcmp(ia.tag, ib.tag, sizeof(ia.tag)) == 0;
}

// True if every pinned program is this build's (same instruction tag), so
// a setup after an upgrade replaces the old program instead of keeping it.
bool PinnedIsThisBuild(const usmc_negotiate_bpf& skel,
                       const std::string& pin_dir) {
  std::array<int, 3> progs = ProgramFds(skel);
  for (size_t i = 0; i < progs.size(); ++i) {
    std::string path = PinPath(pin_dir, kPrograms[i].prog_pin);
    int pinned = bpf_obj_get(path.c_str());
    if (pinned < 0) return false;
    bool same = SameTag(pinned, progs[i]);
    close(pinned);
    if (!same) return false;
  }
  return Exists(PinPath(pin_dir, kCountersPin));
}

Result<bpf_link_info> LinkInfo(int fd) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
    return Status::FromErrno(errno, "bpf link info");
  return info;
}

Result<uint32_t> ProgId(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
    return Status::FromErrno(errno, "bpf prog info");
  return info.id;
}

// The cgroup id is the inode number of the cgroup2 directory.
Result<uint64_t> CgroupId(const std::string& path, Fd* out) {
  Fd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.ok()) return Status::FromErrno(errno, "open cgroup " + path);
  struct statfs fs {};
  if (fstatfs(fd.get(), &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC)
    return Status(StatusCode::kInvalidArgument,
                  path + " is not a cgroup2 directory");
  struct stat st {};
  if (fstat(fd.get(), &st) != 0)
    return Status::FromErrno(errno, "stat " + path);
  if (out != nullptr) *out = std::move(fd);
  return static_cast<uint64_t>(st.st_ino);
}

std::string CgroupPathById(uint64_t id) {
  Result<std::string> root = FindCgroup2Root();
  if (!root.ok()) return "";
  namespace fs = std::filesystem;
  std::error_code ec;
  struct stat st {};
  if (stat(root->c_str(), &st) == 0 && st.st_ino == id) return *root;
  for (fs::recursive_directory_iterator
           it(*root, fs::directory_options::skip_permission_denied, ec),
       end;
       it != end; it.increment(ec)) {
    if (ec) break;
    if (!it->is_directory(ec)) continue;
    if (stat(it->path().c_str(), &st) == 0 && st.st_ino == id)
      return it->path().string();
  }
  return "";
}

Status UnpinAll(const std::string& pin_dir) {
  // Links first: unpinning a link detaches it from its cgroup.
  for (const ProgramSpec& p : kPrograms) {
    std::string path = PinPath(pin_dir, p.link_pin);
    if (unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::FromErrno(errno, "unpin " + path);
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(pin_dir, ec)) {
    if (unlink(entry.path().c_str()) != 0 && errno != ENOENT)
      return Status::FromErrno(errno, "unpin " + entry.path().string());
  }
  return OkStatus();
}

}  // namespace

Result<SetupReport> Setup(const SetupOptions& options) {
  USMC_RETURN_IF_ERROR(CheckPrivilege("usmc setup"));
  SetupReport report;
  if (options.cgroup.empty()) {
    Result<std::string> root = FindCgroup2Root();
    if (!root.ok()) return root.status();
    report.cgroup = *root;
  } else {
    report.cgroup = options.cgroup;
  }
  Fd cgroup_fd;
  Result<uint64_t> cgroup_id = CgroupId(report.cgroup, &cgroup_fd);
  if (!cgroup_id.ok()) return cgroup_id.status();

  USMC_RETURN_IF_ERROR(EnsureBpffs(options.pin_dir));
  if (mkdir(options.pin_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "mkdir " + options.pin_dir);

  // Loading verifies the program even when the pinned one is kept.
  Result<Skeleton> skel = LoadSkeleton();
  if (!skel.ok()) return skel.status();
  if (!PinnedIsThisBuild(**skel, options.pin_dir)) {
    // Fresh, left half-done, or another version: start clean.
    USMC_RETURN_IF_ERROR(UnpinAll(options.pin_dir));
    USMC_RETURN_IF_ERROR(Pin(**skel, options.pin_dir));
    report.loaded = true;
  }
  skel->reset();  // the pins keep what is in use

  for (const ProgramSpec& p : kPrograms) {
    std::string prog_path = PinPath(options.pin_dir, p.prog_pin);
    Fd prog(bpf_obj_get(prog_path.c_str()));
    if (!prog.ok()) return Status::FromErrno(errno, "open pin " + prog_path);
    Result<uint32_t> prog_id = ProgId(prog.get());
    if (!prog_id.ok()) return prog_id.status();

    std::string link_path = PinPath(options.pin_dir, p.link_pin);
    if (Exists(link_path)) {
      Fd link(bpf_obj_get(link_path.c_str()));
      if (link.ok()) {
        Result<bpf_link_info> info = LinkInfo(link.get());
        if (info.ok() && info->prog_id == *prog_id &&
            info->cgroup.cgroup_id == *cgroup_id)
          continue;  // already attached where asked: nothing to do
      }
      if (unlink(link_path.c_str()) != 0)
        return Status::FromErrno(errno, "unpin " + link_path);
      ++report.links_replaced;
    }
    Fd link(bpf_link_create(prog.get(), cgroup_fd.get(), p.type, nullptr));
    if (!link.ok())
      return Status::FromErrno(
          errno, std::string("attach ") + p.name + " to " + report.cgroup);
    USMC_RETURN_IF_ERROR(PinPrivate(link.get(), link_path));
    ++report.links_created;
  }
  return report;
}

Result<AttachStatus> QueryStatus(const std::string& pin_dir) {
  USMC_RETURN_IF_ERROR(CheckPrivilege("usmc setup --status"));
  AttachStatus status;
  status.pin_dir = pin_dir;
  for (const ProgramSpec& p : kPrograms) {
    ProgramAttachment a;
    a.name = p.name;
    Fd prog(bpf_obj_get(PinPath(pin_dir, p.prog_pin).c_str()));
    if (prog.ok()) {
      Result<uint32_t> id = ProgId(prog.get());
      if (id.ok()) a.prog_id = *id;
    }
    Fd link(bpf_obj_get(PinPath(pin_dir, p.link_pin).c_str()));
    if (link.ok()) {
      Result<bpf_link_info> info = LinkInfo(link.get());
      if (info.ok()) {
        a.link_id = info->id;
        a.cgroup_id = info->cgroup.cgroup_id;
      }
    }
    status.programs.push_back(a);
  }
  status.loaded = true;
  status.attached = true;
  for (const ProgramAttachment& a : status.programs) {
    status.loaded = status.loaded && a.prog_id != 0;
    status.attached = status.attached && a.link_id != 0 && a.cgroup_id != 0 &&
                      a.cgroup_id == status.programs[0].cgroup_id;
  }
  status.attached = status.attached && status.loaded;
  if (status.attached) {
    status.cgroup_id = status.programs[0].cgroup_id;
    status.cgroup = CgroupPathById(status.cgroup_id);
  }
  Fd counters(bpf_obj_get(PinPath(pin_dir, kCountersPin).c_str()));
  if (counters.ok()) {
    for (uint32_t i = 0; i < kCounterCount; ++i) {
      uint64_t value = 0;
      if (bpf_map_lookup_elem(counters.get(), &i, &value) == 0)
        status.counters[i] = value;
    }
  }
  return status;
}

Status Remove(const std::string& pin_dir) {
  USMC_RETURN_IF_ERROR(CheckPrivilege("usmc setup --remove"));
  if (!Exists(pin_dir)) return OkStatus();
  USMC_RETURN_IF_ERROR(UnpinAll(pin_dir));
  if (rmdir(pin_dir.c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno(errno, "rmdir " + pin_dir);
  return OkStatus();
}

}  // namespace usmc::negotiate
