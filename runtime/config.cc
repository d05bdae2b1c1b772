#include "runtime/config.h"

#include <sys/sysinfo.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "dev/shm_device.h"
#include "dev/shm_dmb.h"
#include "dev/shm_doorbell.h"

namespace usmc::runtime {

namespace {

constexpr ConfigVar kVars[] = {
    {"USMC_CLC_TIMEOUT_MS", "2000", "an integer 10..60000, in milliseconds"},
    {"USMC_DMB_SIZE",
     "none (1 MiB DMBs up to 4 MiB per process, 256 KiB up to 64 MiB, "
     "64 KiB up to 128 MiB, then 16 KiB)",
     "an integer 16384..1048576, in bytes"},
    {"USMC_DMB_BUDGET", "an eighth of RAM, 256M..4G",
     "bytes, optionally with a K, M or G suffix, e.g. 256M"},
    {"USMC_SPIN_US", "20", "an integer 0..100000, in microseconds"},
    {"USMC_EPOLL_SCAN", "1", "0 or 1"},
    {"USMC_PROGRESS_THREAD", "1", "0 or 1"},
    {"USMC_SMCR", "1", "0 or 1"},
    {"USMC_SHM_ARENA", "1",
     "0 or 1 (1: DMBs in one arena per peer process; 0: one memfd per DMB)"},
};

const ConfigVar& Var(std::string_view name) {
  for (const ConfigVar& v : kVars) {
    if (name == v.name) return v;
  }
  return kVars[0];  // not reached: every caller names a listed variable
}

class Reader {
 public:
  Reader(const EnvLookup& getenv, std::vector<std::string>* errors)
      : getenv_(getenv), errors_(errors) {}

  // The value, or nullptr when unset or empty (both mean "the default").
  const char* Get(const char* name) {
    const char* v = getenv_(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  }

  void Bad(const char* name, const char* value) {
    if (errors_ == nullptr) return;
    const ConfigVar& v = Var(name);
    errors_->push_back(std::string(name) + "=" + value +
                       " is not allowed (allowed: " + v.allowed +
                       "); using the default, " + v.default_text);
  }

  // A decimal integer in [lo, hi]; otherwise nullopt (and an error line).
  std::optional<long> Long(const char* name, long lo, long hi) {
    const char* v = Get(name);
    if (v == nullptr) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    long n = std::strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || n < lo || n > hi) {
      Bad(name, v);
      return std::nullopt;
    }
    return n;
  }

  // "0" or "1"; otherwise nullopt (and an error line).
  std::optional<bool> Flag(const char* name) {
    const char* v = Get(name);
    if (v == nullptr) return std::nullopt;
    if (std::string_view(v) == "0") return false;
    if (std::string_view(v) == "1") return true;
    Bad(name, v);
    return std::nullopt;
  }

 private:
  const EnvLookup& getenv_;
  std::vector<std::string>* errors_;
};

}  // namespace

uint32_t HeldDmbSize(uint64_t held) {
  if (held < (uint64_t{64} << 20)) return kDefaultDmbSize;
  if (held < (uint64_t{128} << 20)) return 64 * 1024;
  return 16 * 1024;
}

uint64_t DefaultDmbBudgetFor(uint64_t ram_bytes) {
  return std::clamp<uint64_t>(ram_bytes / 8, dev::kDefaultDmbBudget,
                              uint64_t{4} << 30);
}

uint64_t DefaultDmbBudget() {
  struct sysinfo si {};
  if (::sysinfo(&si) != 0) return dev::kDefaultDmbBudget;
  return DefaultDmbBudgetFor(uint64_t{si.totalram} * si.mem_unit);
}

Config::Config()
    : dmb_budget(DefaultDmbBudget()), spin_us(dev::kDefaultSpinUs) {}

std::span<const ConfigVar> ConfigVars() { return kVars; }

Config LoadConfig(const EnvLookup& getenv, std::vector<std::string>* errors) {
  Config c;
  Reader r(getenv, errors);
  if (auto ms = r.Long("USMC_CLC_TIMEOUT_MS", 10, 60000)) {
    c.clc_timeout = std::chrono::milliseconds(*ms);
  }
  if (auto n = r.Long("USMC_DMB_SIZE", 16 * 1024, 1024 * 1024)) {
    c.dmb_size = static_cast<uint32_t>(*n);
  }
  if (const char* v = r.Get("USMC_DMB_BUDGET")) {
    if (std::optional<uint64_t> b = dev::ParseByteSize(v)) {
      c.dmb_budget = *b;
    } else {
      r.Bad("USMC_DMB_BUDGET", v);
    }
  }
  if (auto us = r.Long("USMC_SPIN_US", 0, 100000)) {
    c.spin_us = static_cast<uint32_t>(*us);
  }
  if (auto on = r.Flag("USMC_EPOLL_SCAN")) c.epoll_scan = *on;
  if (auto on = r.Flag("USMC_PROGRESS_THREAD")) c.progress_thread = *on;
  if (auto on = r.Flag("USMC_SMCR")) c.smcr = *on;
  if (auto on = r.Flag("USMC_SHM_ARENA")) c.shm_arena = *on;
  return c;
}

void SayOnce(std::string_view line) {
  // FNV-1a: a short, stable name for the line.
  uint32_t h = 2166136261u;
  for (const char c : line) {
    h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  }
  char mark[9];
  std::snprintf(mark, sizeof mark, "%08x", h);
  const char* said = std::getenv("USMC_SAID");
  std::string list = said != nullptr ? said : "";
  for (size_t i = 0; i + 8 <= list.size(); i += 9) {
    if (list.compare(i, 8, mark) == 0) return;
  }
  std::fprintf(stderr, "usmc: %.*s\n", static_cast<int>(line.size()),
               line.data());
  // Bounded: a process with many distinct complaints still says each.
  if (list.size() < 16 * 9) {
    if (!list.empty()) list += ',';
    list += mark;
    ::setenv("USMC_SAID", list.c_str(), 1);
  }
}

const Config& ProcessConfig() {
  static const Config config = [] {
    std::vector<std::string> errors;
    Config c =
        LoadConfig([](const char* n) { return std::getenv(n); }, &errors);
    for (const std::string& e : errors) SayOnce(e);
    dev::SetProcessDmbBudget(c.dmb_budget);
    dev::SetDefaultSpinUs(c.spin_us);
    dev::SetShmArenas(c.shm_arena);
    return c;
  }();
  return config;
}

}  // namespace usmc::runtime
