// The guest's writable files: an in-memory file system (tmpfs semantics)
// rooted at "/", beside the image's read-only tree. What a program creates
// lives here: /tmp and /dev/shm (made at start), and new files and
// directories in "/" or in any directory of its own. The image's own paths
// stay read-only (EROFS); a path here shadows the image's.
//
// Pure logic: file data comes from the Alloc hooks (the program's address
// space in the guest, malloc in the host unit tests), so that running out
// of memory is ENOSPC, never a crash. Paths are normalised and absolute.
#pragma once

#include <stdint.h>

namespace ember::guest {

class MemFs {
 public:
  static constexpr uint32_t kMaxNodes = 1024;  // node 0: none, 1: the root
  static constexpr uint32_t kMaxName = 255;
  enum class Kind : uint8_t { kFree, kFile, kDir };
  // Errors, with Linux's errno values (the host unit tests cannot use the
  // errno names: libc defines them as macros there).
  enum Error : int32_t {
    kOk = 0, kNoEnt = 2, kBusy = 16, kExist = 17, kNotDir = 20, kIsDir = 21, kInval = 22, kFBig = 27,
    kNoSpc = 28, kNameTooLong = 36, kNotEmpty = 39,
  };

  struct Node {
    Kind kind = Kind::kFree;
    uint8_t name_len = 0;
    uint16_t pad = 0;
    uint32_t parent = 0;
    uint32_t mode = 0;      // permission bits
    uint32_t opens = 0;     // open file descriptions that refer to it
    bool linked = false;    // has a name (unlinked but open: data stays until the last close)
    uint64_t size = 0;
    uint64_t data = 0, capacity = 0;  // file bytes at [data, data + capacity)
    uint64_t mtime_ns = 0;
    char name[kMaxName + 1] = {};
  };

  struct Alloc {
    uint64_t (*alloc)(uint64_t len);  // zeroed memory, page-granular, or 0
    void (*free)(uint64_t addr, uint64_t len);
    void (*copy)(uint64_t dst, uint64_t src, uint64_t len);
  };

  void init(const Alloc& a);

  // The node at `path`, or 0.
  uint32_t lookup(const char* path, uint32_t len) const;
  // The directory node that would hold `path` ([path, path + *name_at) is
  // its path), or 0 if it is not a directory here; *name_at/*name_len: the
  // last component.
  uint32_t parent_of(const char* path, uint32_t len, uint32_t* name_at, uint32_t* name_len) const;

  // kOk or kExist, kNoEnt (no directory here for it), kNameTooLong, kNoSpc
  // (no node left). *out: the new node.
  int32_t create(const char* path, uint32_t len, Kind kind, uint32_t mode, uint64_t now_ns, uint32_t* out);
  // unlink (files) and rmdir (empty directories): kOk or kNoEnt, kIsDir,
  // kNotDir, kNotEmpty, kBusy (the root).
  int32_t remove(const char* path, uint32_t len, bool dir);
  // rename(2) within this file system, atomically: kOk or kNoEnt, kExist
  // (no_replace), kIsDir, kNotDir, kNotEmpty, kInval (into itself), kBusy.
  int32_t rename(const char* from, uint32_t from_len, const char* to, uint32_t to_len, bool no_replace,
                 uint64_t now_ns);

  // File data: bytes read (short at the end); bytes written or -kNoSpc,
  // -kFBig, -kIsDir.
  uint64_t read(uint32_t node, uint64_t offset, void* buf, uint64_t n) const;
  int64_t write(uint32_t node, uint64_t offset, const void* data, uint64_t n, uint64_t now_ns);
  int32_t truncate(uint32_t node, uint64_t size, uint64_t now_ns);  // kOk or kNoSpc, kFBig, kIsDir

  // An open description took or dropped the node (an unlinked node's
  // memory goes with its last close).
  void opened(uint32_t node) { nodes_[node].opens++; }
  void closed(uint32_t node);

  const Node& node(uint32_t id) const { return nodes_[id]; }
  void set_mode(uint32_t id, uint32_t mode) { nodes_[id].mode = mode & 07777; }
  void set_mtime(uint32_t id, uint64_t ns) { nodes_[id].mtime_ns = ns; }
  // The i-th child of directory `dir` (from 0), or 0 past the last.
  uint32_t child(uint32_t dir, uint32_t i) const;
  bool has_children(uint32_t dir) const { return child(dir, 0) != 0; }
  // The path of `id` into out (at most cap bytes, no NUL); its length.
  uint32_t path_of(uint32_t id, char* out, uint32_t cap) const;

 private:
  uint32_t find_child(uint32_t dir, const char* name, uint32_t len) const;
  bool is_ancestor(uint32_t maybe_ancestor, uint32_t id) const;
  void release(uint32_t id);  // frees data and the node
  bool reserve(Node& n, uint64_t size);
  void zero(Node& f, uint64_t from, uint64_t to);

  Alloc a_{};
  Node nodes_[kMaxNodes];
};

}  // namespace ember::guest
