// One option of a command line as the CLIs cut it: "--name=value",
// "--name value" or "-x value", and "--flag" (no value).
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace ember {

class CliOption {
 public:
  // argv[*i] is the option; value() may take argv[*i + 1] (and advance *i).
  // `help`: where a user reads about it, for the error ("`ember-vmm run --help`").
  CliOption(const std::vector<std::string>& argv, size_t* i, std::string help)
      : argv_(argv), i_(i), help_(std::move(help)), name_(argv[*i]) {
    if (name_.rfind("--", 0) == 0) {
      const auto eq = name_.find('=');
      if (eq != std::string::npos) {
        inline_value_ = name_.substr(eq + 1);
        name_.resize(eq);
        has_inline_ = true;
      }
    }
  }

  const std::string& name() const { return name_; }
  // The inline value, or the next argument.
  Result<std::string> value() {
    if (has_inline_) return inline_value_;
    if (*i_ + 1 >= argv_.size()) return Error{name_ + " needs a value (see " + help_ + ")"};
    return argv_[++*i_];
  }
  // An option that takes no value.
  Result<void> flag() const {
    if (has_inline_) return Error{name_ + " takes no value"};
    return Ok();
  }

 private:
  const std::vector<std::string>& argv_;
  size_t* i_;
  std::string help_;
  std::string name_;
  std::string inline_value_;
  bool has_inline_ = false;
};

}  // namespace ember
