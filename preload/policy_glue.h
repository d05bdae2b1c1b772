// preload/policy_glue.h: the process's policy (preload/policy.h), loaded
// once at start, asked by the connect() and listen() wrappers.
#ifndef USMC_PRELOAD_POLICY_GLUE_H_
#define USMC_PRELOAD_POLICY_GLUE_H_

#include <sys/socket.h>

namespace usmc::preload {

// Loads the policy; on a bad config prints the error once and turns SMC
// off for the process (every socket stays plain TCP).
void LoadProcessPolicy();
bool PolicyAllowsConnect(int fd, const sockaddr* remote, socklen_t len);
bool PolicyAllowsListen(int fd);
// Set by close/dup2 wrappers; used by the exec and fork wrappers too.
void ForgetFdForProcess(int fd);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_POLICY_GLUE_H_
