// Turns a deploy's body into the function's Ember image: a static ELF is
// packed (argv = /bin/NAME + args, env); an Ember image is validated and kept
// as it is, or repacked when the deploy overrides its args or env.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "controller/function_spec.h"

namespace ember::controller {

enum class BodyKind { kElf, kImage, kUnknown };
BodyKind detect_body(const std::string& body);

struct BuiltImage {
  std::string source;  // "elf" or "image"
  uint64_t bytes = 0;
};

// Writes OUT (atomically). `work_dir` holds temporary files and is removed
// afterwards. Errors are the deployer's fault (bad body) and read as such.
Result<BuiltImage> build_function_image(const std::string& name, const std::string& body, const FunctionSpec& spec,
                                        const std::string& work_dir, const std::string& out_path);

}  // namespace ember::controller
