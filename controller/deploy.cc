// Controller, deploy and remove: a function version's files, its template
// snapshot, its first VM, and the switch from the old version.
#include "controller/controller.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "api/snapshot_files.h"
#include "api/stdio_protocol.h"
#include "base/self_path.h"
#include "controller/controller_internal.h"
#include "controller/fsutil.h"
#include "controller/image_build.h"
#include "controller/system_limits.h"


namespace ember::controller {

using nlohmann::json;
using namespace detail;

// ---------------------------------------------------------------------------
// Deploy

Result<void> Controller::take_template(const std::shared_ptr<FunctionVersion>& fn, const Admission::Slot& slot,
                                       std::string* user_error) {
  // Boot the image, let the program run its start-up until it first reads
  // stdin, snapshot there (ember-vmm run --snapshot-at-ready). The program
  // is untrusted from its first instruction: jailed like every VM, its
  // snapshot is written to the jail's /run and copied out from there.
  const auto t0 = Clock::now();
  const std::string id = new_vm_id();
  VmPaths p;
  p.vmm = vmm_path_;
  p.kernel = cfg_.guest_kernel;
  p.image = fn->image_path;
  p.snapshot_dir = fn->snapshot_dir;
  std::vector<std::string> argv = template_command(jail_ ? "" : id, fn->rec.spec, p);
  const std::string run_dir = run_dir_ + "/" + id;  // marks the jail for a restart's orphan cleanup
  if (jail_) {
    JailSpec j = jail_spec(id, *fn, slot.uid());
    // The snapshot it writes: at most the guest's memory, and the image.
    j.fsize_bytes += (uint64_t{fn->rec.spec.memory_mib} << 20) + fn->rec.image_bytes;
    argv = jailed_command(j, argv);
    if (auto m = make_dirs(run_dir, 0711); !m) return m.error();
    if (auto w = write_file_atomic(run_dir + "/jailed", id); !w) return w.error();
  }
  auto r = run_command(argv, cfg_.deploy_timeout_ms, kChildEnv);
  if (jail_) {
    Result<void> out = Ok();
    if (r && !r->timed_out && r->status.shell_code() == 0) {
      // vm.mem is at most the guest's memory; vm.img is the image.
      struct stat img {};
      (void)::stat(fn->image_path.c_str(), &img);
      const uint64_t cap = (static_cast<uint64_t>(fn->rec.spec.memory_mib) << 20) + static_cast<uint64_t>(img.st_size) +
                           (64ull << 20);
      const std::string made = jail_run_path(cfg_.jailer.chroot_base, id, std::filesystem::path(fn->snapshot_dir).filename());
      out = copy_untrusted_files(made, fn->snapshot_dir, {kVmstateFile, kMemFile, kImageFile}, cap);
    }
    janitor_add(run_dir, id);  // the jail goes, whatever happened in it
    if (!out) {
      *user_error = "the template snapshot could not be taken out of its jail: " + out.message();
      return Error{*user_error};
    }
  }
  if (!r) return r.error();
  if (r->timed_out) {
    *user_error = "the program did not read stdin within " + std::to_string(cfg_.deploy_timeout_ms) +
                  " ms of booting (deploy_timeout_ms), so no template snapshot could be taken";
    return Error{*user_error};
  }
  if (r->status.shell_code() != 0 || !path_exists(fn->snapshot_dir)) {
    // The program's doing (a 422): it ended before reading stdin, or its
    // start-up outgrew the jail's memory limit. The host's (a 500): the jail
    // could not be built (ember-jailer speaks), the VM or VMM failed. Only
    // stderr says which: the program's output is all on stdout
    // (--program-stderr-on-stdout), so it cannot pose as either.
    const std::string jailer_line = last_line(r->errors, "ember-jailer: ");
    const std::string vmm_line = last_line(r->errors, "ember-vmm: ");
    const std::string line = jailer_line.empty() ? vmm_line : jailer_line;
    const bool ended_early = jailer_line.empty() && (r->status.shell_code() != 125 ||
                                                     vmm_line.find(std::string("ember-vmm: ") + kNoSnapshotPrefix) == 0);
    const bool out_of_memory = jailer_line.find("memory limit") != std::string::npos;
    const std::string what = "the template boot " + r->status.describe() +
                             " instead of pausing at the program's first read of stdin" + (line.empty() ? "" : ": " + line);
    if (!ended_early && !out_of_memory) return Error{what};
    *user_error = what + (ended_early ? " (a function must read its request from stdin)" : "");
    return Error{*user_error};
  }
  fn->rec.template_us = us_since(t0);
  fn->rec.snapshot_bytes = disk_usage(fn->snapshot_dir);
  metrics_.lifecycle("template").Observe(seconds_since(t0));
  return Ok();
}

ApiResult Controller::deploy(const std::string& name, const std::string& body, const FunctionSpec& spec) {
  auto lock = deploy_lock(name);
  std::lock_guard<std::mutex> dl(*lock);
  auto old = current(name);
  auto fail = [&](Outcome outcome, const std::string& msg) {
    metrics_.deploy_failures->Increment();
    if (!old) forget_name(name, lock);  // no per-name state left behind by names that never deployed
    log_.info("deploy %s failed: %s", name.c_str(), msg.c_str());
    ApiResult r;
    r.outcome = outcome;
    r.error = msg;
    if (outcome == Outcome::kBusy) r.retry_after_s = 1;
    return r;
  };
  if (!old) {
    std::lock_guard<std::mutex> l(mu_);
    if (functions_.size() >= cfg_.limits.max_functions)
      return fail(Outcome::kBusy, "limits.max_functions (" + std::to_string(cfg_.limits.max_functions) + ") functions are deployed");
  }
  // The next version number: above the current one and anything on disk.
  uint64_t version = old ? old->rec.version + 1 : 1;
  const std::string name_dir = functions_dir_ + "/" + name;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(name_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.size() > 1 && f[0] == 'v') version = std::max<uint64_t>(version, std::strtoull(f.c_str() + 1, nullptr, 10) + 1);
  }
  auto fn = std::make_shared<FunctionVersion>();
  fn->rec.name = name;
  fn->rec.version = version;
  fn->rec.spec = spec;
  fn->rec.mechanism = mechanism_;
  fn->rec.created_at = rfc3339_now();
  fn->dir = name_dir + "/v" + std::to_string(version);
  fn->image_path = fn->dir + "/image.img";
  fn->snapshot_dir = fn->dir + "/snapshot";
  fn->stats = stats_for(name);
  if (auto r = make_dirs(fn->dir, 0711); !r) return fail(Outcome::kInternal, r.message());
  fn->remove_files = true;  // until the deploy has succeeded
  auto built = build_function_image(name, body, spec, fn->dir + "/build", fn->image_path);
  if (!built) return fail(Outcome::kBadRequest, built.message());
  fn->rec.source = built->source;
  fn->rec.image_bytes = built->bytes;
  if (fn->rec.mechanism == Mechanism::kSnapshot) {
    // The template boot is a VM like any other: it needs room on the host.
    std::string why, user_error;
    auto slot = admit_vm(fn, true, &why);
    if (!slot) return fail(Outcome::kBusy, "no room for the template VM: " + why);
    if (auto t = take_template(fn, *slot, &user_error); !t) return fail(user_error.empty() ? Outcome::kInternal : Outcome::kUnrunnable, t.message());
  }
  cap_pool(*fn);
  // One VM before the switch: a function whose VMs cannot start is refused
  // here, not at its first invocation.
  std::shared_ptr<Vm> first;
  if (fn->pool_size > 0) {
    std::string why;
    if (auto slot = admit_vm(fn, true, &why)) {
      auto vm = start_vm(fn, std::move(*slot));
      if (!vm) return fail(Outcome::kUnrunnable, "the function's first VM did not start: " + vm.message());
      first = *vm;
    }
  }
  // Persist, then switch: a crash before the rename keeps the old version.
  // (The image and snapshot files and their directories' entries were
  // fsynced as they were written; a first deploy's NAME directory entry
  // in functions/ is made durable here, or a crash could lose the function.)
  auto persisted = write_file_atomic(name_dir + "/function.json", record_to_json(fn->rec).dump(2) + "\n");
  if (persisted && !old) persisted = fsync_path(functions_dir_);
  if (!persisted) {
    if (first) retire_vm(first, "deploy failed");
    return fail(Outcome::kInternal, persisted.message());
  }
  fn->remove_files = false;
  if (first) {
    std::lock_guard<std::mutex> l(fn->mu);
    first->parked_at = Clock::now();
    fn->ready.push_back(first);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    functions_[name] = fn;
  }
  if (old) {
    // In-flight invocations finish on the old version; its files go with its last reference.
    drain(old, "function redeployed");
    old->remove_files = true;
  }
  metrics_.deploys->Increment();
  log_.info("deployed %s v%llu (%s, %s mechanism, image %llu bytes%s)", name.c_str(),
            static_cast<unsigned long long>(version), fn->rec.source.c_str(), mechanism_name(fn->rec.mechanism),
            static_cast<unsigned long long>(fn->rec.image_bytes),
            fn->rec.mechanism == Mechanism::kSnapshot
                ? (", snapshot " + std::to_string(fn->rec.snapshot_bytes) + " bytes in " + std::to_string(fn->rec.template_us / 1000) + " ms").c_str()
                : "");
  // Fill the pool, then answer (bounded by deploy_timeout_ms).
  request_refill(fn);
  const auto deadline = Clock::now() + std::chrono::milliseconds(cfg_.deploy_timeout_ms);
  for (;;) {
    {
      std::lock_guard<std::mutex> l(fn->mu);
      if (fn->ready.size() >= fn->pool_size || fn->failures > 0 || fn->memory_limited) break;
    }
    if (Clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  update_gauges();
  ApiResult r;
  r.outcome = Outcome::kCreated;
  r.body = describe_json(fn);
  return r;
}

ApiResult Controller::remove(const std::string& name) {
  auto lock = deploy_lock(name);
  std::lock_guard<std::mutex> dl(*lock);
  std::shared_ptr<FunctionVersion> fn;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return ApiResult{Outcome::kNotFound, "no function named '" + name + "'", {}, 0};
    fn = it->second;
    functions_.erase(it);
  }
  // The record first: after a crash from here on, the function stays deleted.
  ::unlink((functions_dir_ + "/" + name + "/function.json").c_str());
  (void)fsync_path(functions_dir_ + "/" + name);
  drain(fn, "function deleted");
  fn->remove_files = true;
  metrics_.remove_function(name);
  forget_name(name, lock);  // a function deployed again under this name starts its counts afresh
  log_.info("deleted %s", name.c_str());
  update_gauges();
  return ApiResult{Outcome::kRemoved, "", {}, 0};
}


}  // namespace ember::controller
