// Plain reads and splits for ember-jailer and for what reads the records it
// leaves (jail_record.h). No iostreams: their first use in a static binary
// costs ~150 µs of locale set-up, a sixth of the jail's budget.
#pragma once

#include <string>
#include <vector>

namespace ember::jail {

// All of fd (from where it stands); what was read before an error.
std::string read_fd(int fd);
// All of the file at `path`; "" when it cannot be opened.
std::string read_text(const std::string& path);
// The non-empty pieces of `text` between `sep`s: "/a//b" -> {"a", "b"}.
std::vector<std::string> split_nonempty(const std::string& text, char sep);
inline std::vector<std::string> lines_of(const std::string& text) { return split_nonempty(text, '\n'); }

}  // namespace ember::jail
