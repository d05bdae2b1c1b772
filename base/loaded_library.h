// base/loaded_library.h: which shared object this process has loaded, by
// part of its name (`usmc run` and the preload tests look for the ASan
// runtime, which must come first in LD_PRELOAD).
#ifndef USMC_BASE_LOADED_LIBRARY_H_
#define USMC_BASE_LOADED_LIBRARY_H_

#include <link.h>

#include <cstring>
#include <string>

namespace usmc {

// Path of the last loaded object whose name contains `part`, or "".
inline std::string LoadedLibrary(const char* part) {
  struct Search {
    const char* part;
    std::string found;
  } search{part, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_name != nullptr &&
            std::strstr(info->dlpi_name, s->part) != nullptr) {
          s->found = info->dlpi_name;
        }
        return 0;
      },
      &search);
  return search.found;
}

}  // namespace usmc

#endif  // USMC_BASE_LOADED_LIBRARY_H_
