// Freestanding (see memfs.h).
#include "guest-init/memfs.h"

#include "guest-init/klib.h"

namespace ember::guest {

namespace {

constexpr uint64_t kPageBytes = 4096;
constexpr uint32_t kRoot = 1;

uint64_t round_up(uint64_t v) { return (v + kPageBytes - 1) & ~(kPageBytes - 1); }

}  // namespace

void MemFs::init(const Alloc& a) {
  a_ = a;
  for (Node& n : nodes_) n = Node{};
  nodes_[kRoot].kind = Kind::kDir;
  nodes_[kRoot].mode = 0755;
  nodes_[kRoot].linked = true;
}

uint32_t MemFs::find_child(uint32_t dir, const char* name, uint32_t len) const {
  for (uint32_t i = 2; i < kMaxNodes; i++) {
    const Node& n = nodes_[i];
    if (n.kind != Kind::kFree && n.linked && n.parent == dir && n.name_len == len && memcmp(n.name, name, len) == 0)
      return i;
  }
  return 0;
}

uint32_t MemFs::lookup(const char* path, uint32_t len) const {
  if (len == 0 || path[0] != '/') return 0;
  uint32_t at = kRoot, i = 1;
  while (i < len) {
    uint32_t j = i;
    while (j < len && path[j] != '/') j++;
    if (nodes_[at].kind != Kind::kDir) return 0;
    at = find_child(at, path + i, j - i);
    if (!at) return 0;
    i = j + 1;
  }
  return at;
}

uint32_t MemFs::parent_of(const char* path, uint32_t len, uint32_t* name_at, uint32_t* name_len) const {
  if (len < 2 || path[0] != '/') return 0;
  uint32_t slash = 0;
  for (uint32_t i = 0; i < len; i++)
    if (path[i] == '/') slash = i;
  *name_at = slash + 1;
  *name_len = len - slash - 1;
  const uint32_t dir = slash == 0 ? kRoot : lookup(path, slash);
  return dir && nodes_[dir].kind == Kind::kDir ? dir : 0;
}

int32_t MemFs::create(const char* path, uint32_t len, Kind kind, uint32_t mode, uint64_t now_ns, uint32_t* out) {
  uint32_t name_at, name_len;
  const uint32_t dir = parent_of(path, len, &name_at, &name_len);
  if (!dir) return kNoEnt;
  if (name_len == 0) return kExist;  // "/" itself
  if (name_len > kMaxName) return kNameTooLong;
  if (find_child(dir, path + name_at, name_len)) return kExist;
  for (uint32_t i = 2; i < kMaxNodes; i++) {
    if (nodes_[i].kind != Kind::kFree) continue;
    Node& n = nodes_[i];
    n = Node{};
    n.kind = kind;
    n.parent = dir;
    n.mode = mode & 07777;
    n.linked = true;
    n.mtime_ns = now_ns;
    n.name_len = static_cast<uint8_t>(name_len);
    memcpy(n.name, path + name_at, name_len);
    nodes_[dir].mtime_ns = now_ns;
    *out = i;
    return 0;
  }
  return kNoSpc;
}

uint32_t MemFs::child(uint32_t dir, uint32_t i) const {
  for (uint32_t id = 2; id < kMaxNodes; id++) {
    const Node& n = nodes_[id];
    if (n.kind != Kind::kFree && n.linked && n.parent == dir && i-- == 0) return id;
  }
  return 0;
}

void MemFs::release(uint32_t id) {
  Node& n = nodes_[id];
  if (n.capacity) a_.free(n.data, n.capacity);
  n = Node{};
}

void MemFs::closed(uint32_t id) {
  Node& n = nodes_[id];
  if (n.opens) n.opens--;
  if (!n.opens && !n.linked && n.kind != Kind::kFree) release(id);
}

int32_t MemFs::remove(const char* path, uint32_t len, bool dir) {
  const uint32_t id = lookup(path, len);
  if (!id) return kNoEnt;
  if (id == kRoot) return kBusy;
  Node& n = nodes_[id];
  if (dir && n.kind != Kind::kDir) return kNotDir;
  if (!dir && n.kind == Kind::kDir) return kIsDir;
  if (n.kind == Kind::kDir && has_children(id)) return kNotEmpty;
  n.linked = false;
  if (!n.opens) release(id);
  return 0;
}

bool MemFs::is_ancestor(uint32_t maybe_ancestor, uint32_t id) const {
  for (uint32_t at = id; at && at != kRoot; at = nodes_[at].parent)
    if (at == maybe_ancestor) return true;
  return maybe_ancestor == kRoot;
}

int32_t MemFs::rename(const char* from, uint32_t from_len, const char* to, uint32_t to_len, bool no_replace,
                      uint64_t now_ns) {
  const uint32_t src = lookup(from, from_len);
  if (!src) return kNoEnt;
  if (src == kRoot) return kBusy;
  uint32_t name_at, name_len;
  const uint32_t dir = parent_of(to, to_len, &name_at, &name_len);
  if (!dir) return kNoEnt;
  if (name_len == 0) return kBusy;
  if (name_len > kMaxName) return kNameTooLong;
  Node& s = nodes_[src];
  if (s.kind == Kind::kDir && is_ancestor(src, dir)) return kInval;  // into itself
  const uint32_t dst = find_child(dir, to + name_at, name_len);
  if (dst == src) return 0;
  if (dst) {
    if (no_replace) return kExist;
    const Node& d = nodes_[dst];
    if (s.kind == Kind::kDir && d.kind != Kind::kDir) return kNotDir;
    if (s.kind != Kind::kDir && d.kind == Kind::kDir) return kIsDir;
    if (d.kind == Kind::kDir && has_children(dst)) return kNotEmpty;
    // The old target goes in the same step: no moment without either.
    nodes_[dst].linked = false;
    if (!nodes_[dst].opens) release(dst);
  }
  nodes_[s.parent].mtime_ns = now_ns;
  s.parent = dir;
  s.name_len = static_cast<uint8_t>(name_len);
  memcpy(s.name, to + name_at, name_len);
  s.name[name_len] = 0;
  nodes_[dir].mtime_ns = now_ns;
  return 0;
}

void MemFs::zero(Node& f, uint64_t from, uint64_t to) {
  static const uint8_t kZeros[256] = {};
  for (uint64_t at = from; at < to;) {
    const uint64_t k = to - at < sizeof kZeros ? to - at : sizeof kZeros;
    a_.copy(f.data + at, reinterpret_cast<uint64_t>(kZeros), k);
    at += k;
  }
}

bool MemFs::reserve(Node& n, uint64_t size) {
  if (size <= n.capacity) return true;
  // Grow by doubling (a file written piece by piece is copied log(n) times).
  uint64_t cap = n.capacity ? n.capacity : kPageBytes;
  while (cap < size) {
    if (cap > (1ull << 40)) return false;
    cap *= 2;
  }
  cap = round_up(cap);
  const uint64_t at = a_.alloc(cap);
  if (!at) return false;
  if (n.size) a_.copy(at, n.data, n.size);
  if (n.capacity) a_.free(n.data, n.capacity);
  n.data = at;
  n.capacity = cap;
  return true;
}

uint64_t MemFs::read(uint32_t id, uint64_t offset, void* buf, uint64_t n) const {
  const Node& f = nodes_[id];
  if (f.kind != Kind::kFile || offset >= f.size) return 0;
  const uint64_t take = f.size - offset < n ? f.size - offset : n;
  if (take) a_.copy(reinterpret_cast<uint64_t>(buf), f.data + offset, take);
  return take;
}

int64_t MemFs::write(uint32_t id, uint64_t offset, const void* data, uint64_t n, uint64_t now_ns) {
  Node& f = nodes_[id];
  if (f.kind != Kind::kFile) return -kIsDir;
  if (n == 0) return 0;
  uint64_t end;
  if (__builtin_add_overflow(offset, n, &end) || end > (1ull << 40)) return -kFBig;
  if (!reserve(f, end)) return -kNoSpc;
  if (offset > f.size) zero(f, f.size, offset);  // a hole reads as zeros, whatever a shrink left there
  a_.copy(f.data + offset, reinterpret_cast<uint64_t>(data), n);
  if (end > f.size) f.size = end;
  f.mtime_ns = now_ns;
  return static_cast<int64_t>(n);
}

int32_t MemFs::truncate(uint32_t id, uint64_t size, uint64_t now_ns) {
  Node& f = nodes_[id];
  if (f.kind != Kind::kFile) return kIsDir;
  if (size > (1ull << 40)) return kFBig;
  if (size > f.size) {
    if (!reserve(f, size)) return kNoSpc;
    zero(f, f.size, size);  // a shrink before may have left bytes there
  }
  f.size = size;
  f.mtime_ns = now_ns;
  return 0;
}

uint32_t MemFs::path_of(uint32_t id, char* out, uint32_t cap) const {
  // Components from the leaf up, then reversed in place.
  uint32_t ids[64], depth = 0;
  for (uint32_t at = id; at && at != kRoot && depth < 64; at = nodes_[at].parent) ids[depth++] = at;
  uint32_t len = 0;
  if (depth == 0 && cap) out[len++] = '/';
  while (depth--) {
    const Node& n = nodes_[ids[depth]];
    if (len + 1 + n.name_len > cap) break;
    out[len++] = '/';
    memcpy(out + len, n.name, n.name_len);
    len += n.name_len;
  }
  return len;
}

}  // namespace ember::guest
