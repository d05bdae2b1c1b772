// runtime/arena_watch.h: what the interposer's progress thread needs of
// the process's arena pairs (dev/shm_pairs.h): the pidfds of idle pairs to
// watch for their peer's exit, and dropping the pairs whose peer exited.
#ifndef USMC_RUNTIME_ARENA_WATCH_H_
#define USMC_RUNTIME_ARENA_WATCH_H_

#include <vector>

#include "dev/shm_pairs.h"

namespace usmc::runtime {

// Whether an idle pair's peer is being watched (dev::kPairWatch).
inline bool ArenaPairsWatching() {
  return dev::ArenaPairs::Process().Watching(dev::kPairWatch);
}
// Their pidfds; *next_ms: when the first stops being watched (-1: none).
inline std::vector<int> ArenaPairWatchFds(int* next_ms) {
  return dev::ArenaPairs::Process().WatchFds(dev::kPairWatch, next_ms);
}
inline void DropArenaPairsOfExitedPeers() {
  dev::ArenaPairs::Process().DropExited();
}

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_ARENA_WATCH_H_
