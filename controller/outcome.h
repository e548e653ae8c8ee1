// What a controller call came to, in the controller's words. http_api.cc
// alone turns an Outcome into an HTTP status (api/openapi-emberd.yaml).
#pragma once

#include <cstdint>

namespace ember::controller {

enum class Outcome : uint8_t {
  kOk,          // done, with an answer
  kCreated,     // a function version deployed
  kRemoved,     // a function or VM is gone; nothing to say
  kBadRequest,  // the request itself is malformed
  kNotFound,    // no such function or VM
  kUnrunnable,  // the function cannot run (its program or image fails to start)
  kBusy,        // no room now; the caller may retry (retry_after_s)
  kInternal,    // emberd's own failure (its disk, its state)
  kVmFailed,    // the VM or its VMM failed or was stopped
  kTimeout,     // the program ran out of time; its VM was killed
};

// For logs.
inline const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kOk: return "ok";
    case Outcome::kCreated: return "created";
    case Outcome::kRemoved: return "removed";
    case Outcome::kBadRequest: return "bad request";
    case Outcome::kNotFound: return "not found";
    case Outcome::kUnrunnable: return "unrunnable";
    case Outcome::kBusy: return "busy";
    case Outcome::kInternal: return "internal error";
    case Outcome::kVmFailed: return "VM failed";
    case Outcome::kTimeout: return "timed out";
  }
  return "?";
}

}  // namespace ember::controller
