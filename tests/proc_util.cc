#include "tests/proc_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "tests/negotiate_harness.h"

extern char** environ;

namespace usmc::test_proc {

namespace fs = std::filesystem;

std::ostream& operator<<(std::ostream& os, const Exit& e) {
  return os << "exit " << e.code << (e.timed_out ? " (TIMED OUT, killed)" : "")
            << "\n--- stdout ---\n"
            << e.out << "--- stderr ---\n"
            << e.err;
}

// Where the processes of group `pgid` hang (gdb, if installed): the
// report of a hang names the blocking call.
std::string StacksOfGroup(pid_t pgid) {
  if (access("/usr/bin/gdb", X_OK) != 0) return {};
  std::string out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (getpgid(std::stoi(name)) != pgid) continue;
    negotiate_test::CommandResult r = negotiate_test::RunCommand(
        "gdb -batch -nx -p " + name +
        " -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^(#|Thread)'");
    out += "\n[stacks of hung pid " + name + "]\n" + r.out.substr(0, 6000);
  }
  return out;
}

Proc::Proc(const std::vector<std::string>& args, const EnvMap& env) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string v = *e;
    std::string key = v.substr(0, v.find('='));
    if (key == "LD_PRELOAD" || key.rfind("USMC_", 0) == 0 || env.count(key)) {
      continue;
    }
    env_store.push_back(v);
  }
  for (const auto& [k, v] : env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args_store = args;
  for (auto& s : args_store) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  setpgid(pid_, pid_);
  close(out[1]);
  close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
}
Proc::~Proc() {
  if (pid_ > 0 && !reaped_) {
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

std::optional<std::string> Proc::ReadLine(int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    size_t nl = exit_.out.find('\n', line_pos_);
    if (nl != std::string::npos) {
      std::string line = exit_.out.substr(line_pos_, nl - line_pos_);
      line_pos_ = nl + 1;
      return line;
    }
    int left = MsLeft(deadline);
    if (left == 0 || out_fd_ < 0) return std::nullopt;
    if (!Pump(left)) return std::nullopt;
  }
}

Exit Proc::Wait(int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::optional<Clock::time_point> exited_at;
  while (!reaped_ || out_fd_ >= 0 || err_fd_ >= 0) {
    if (!reaped_) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        reaped_ = true;
        exit_.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (WIFSIGNALED(st)) {
          exit_.err +=
              "\n[killed by signal " + std::to_string(WTERMSIG(st)) + "]\n";
        }
        exited_at = Clock::now();
      }
    }
    // Grandchildren may hold the pipes; give them a moment after exit.
    if (exited_at && Clock::now() - *exited_at > std::chrono::seconds(2)) {
      break;
    }
    if (MsLeft(deadline) == 0) {
      exit_.timed_out = true;
      exit_.err += StacksOfGroup(pid_);
      break;
    }
    Pump(50);
  }
  if (pid_ > 0) kill(-pid_, SIGKILL);
  if (!reaped_) {
    int st = 0;
    waitpid(pid_, &st, 0);
    reaped_ = true;
    exit_.code = -1;
  }
  while (Pump(0)) {
  }
  return exit_;
}

int Proc::MsLeft(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                  Clock::now())
                .count();
  return ms <= 0 ? 0 : static_cast<int>(ms);
}
bool Proc::Pump(int timeout_ms) {
  pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (out_fd_ < 0 && err_fd_ < 0) return false;
  if (poll(p, 2, timeout_ms) <= 0) return true;
  for (int i = 0; i < 2; ++i) {
    if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
      continue;
    }
    char buf[4096];
    ssize_t n = read(p[i].fd, buf, sizeof buf);
    if (n <= 0) {
      close(p[i].fd);
      (i == 0 ? out_fd_ : err_fd_) = -1;
      continue;
    }
    (i == 0 ? exit_.out : exit_.err).append(buf, static_cast<size_t>(n));
  }
  return true;
}

}  // namespace usmc::test_proc
