// Controller, VM launching: starting a VMM (jailed or not, boot or restore)
// until its VM is parked at ready, the VM records, and what happens when a
// VMM exits.
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

namespace {

// What a pipe holds now, without waiting for more (at most 64 KiB).
std::string read_available(int fd) {
  std::string text;
  char buf[4096];
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  for (ssize_t n; text.size() < 65536 && (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  return text;
}

}  // namespace

// ---------------------------------------------------------------------------
// VMs

namespace {

// A jailer that failed or was killed once it had started the VMM leaves the
// VMM running as our child with no pid on record: found by its --id, it is
// killed and reaped, never left to run unowned or to linger as a zombie.
void reap_stray_vmm(const std::string& id) {
  for (const Fd& pidfd : kill_processes_with_id([&](const std::string& x) { return x == id; }))
    (void)wait_process(pidfd.get());
}

}  // namespace

Result<void> Controller::spawn_vm(const std::shared_ptr<Vm>& vm, const std::vector<std::string>& vmm_argv, int in_fd,
                                  int out_fd, int err_fd) {
  SpawnOptions o;
  o.env = kChildEnv;
  o.stdin_fd = in_fd;
  o.stdout_fd = out_fd;
  o.stderr_fd = err_fd;
  Child c;
  if (jail_) {
    // ember-jailer --detach builds the jail, starts the VMM in it as our own
    // child and exits: no supervising process stays per VM (its memory, page
    // tables and task were ~10 % of what a parked VM costs the host), and we
    // own the VMM as we own an unjailed one.
    JailSpec j = jail_spec(vm->id, *vm->fn, vm->slot.uid());
    j.detach = true;
    o.argv = jailed_command(j, vmm_argv);
    vm->jailed = true;
    EMBER_TRY_VOID(write_file_atomic(vm->run_dir + "/jailed", vm->id));
    EMBER_TRY(Child jailer, spawn_process(o));
    auto st = wait_process_until(jailer.pidfd.get(), Clock::now() + std::chrono::milliseconds(cfg_.deploy_timeout_ms));
    if (!st) {
      signal_process(jailer.pidfd.get(), SIGKILL);
      (void)wait_process(jailer.pidfd.get());
      reap_stray_vmm(vm->id);
      return Error{"ember-jailer did not finish the jail within deploy_timeout_ms (" +
                   std::to_string(cfg_.deploy_timeout_ms) + " ms)"};
    }
    const pid_t pid = st->shell_code() == 0 ? detached_vmm_pid(cfg_.jailer.chroot_base, vm->id) : -1;
    if (pid < 0) {
      reap_stray_vmm(vm->id);
      if (st->shell_code() != 0) return Error{"ember-jailer " + st->describe()};
      return Error{"ember-jailer --detach left no VMM pid in the jail " + vm->id};
    }
    auto adopted = adopt_child(pid);
    if (!adopted) {
      discard_child(pid);
      return adopted.error();
    }
    c = std::move(*adopted);
  } else {
    o.argv = vmm_argv;
    EMBER_TRY(c, spawn_process(o));
  }
  vm->pid = c.pid;
  vm->pidfd = std::move(c.pidfd);
  register_vm(vm);
  // The callback owns the VM until it has exited (it keeps the pidfd open).
  auto keep = vm;
  if (auto w = reaper_.watch(vm->pidfd.get(), [this, keep](ExitStatus st) { on_vm_exit(keep, st); }); !w) {
    signal_process(vm->pidfd.get(), SIGKILL);
    (void)wait_process(vm->pidfd.get());
    unregister_vm(vm);
    return w.error();
  }
  return Ok();
}

Result<std::shared_ptr<Vm>> Controller::start_vm(const std::shared_ptr<FunctionVersion>& fn, Admission::Slot slot) {
  const auto t0 = Clock::now();
  auto vm = std::make_shared<Vm>();
  vm->slot = std::move(slot);
  vm->id = new_vm_id();
  vm->fn = fn;
  vm->run_dir = run_dir_ + "/" + vm->id;
  auto fail = [&](const std::string& what) -> Error {
    metrics_.vm_start_failures->Increment();
    janitor_add(vm->run_dir, vm->jailed ? vm->id : "");
    return Error{what};
  };
  if (auto r = make_dirs(vm->run_dir, 0711); !r) return fail(r.message());
  VmPaths paths;
  paths.vmm = vmm_path_;
  paths.kernel = cfg_.guest_kernel;
  paths.image = fn->image_path;
  paths.snapshot_dir = fn->snapshot_dir;
  if (fn->rec.mechanism == Mechanism::kBoot) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) < 0) return fail(errno_error("pipe").message);
    Fd in_r(in[0]), in_w(in[1]);
    if (::pipe2(out, O_CLOEXEC) < 0) return fail(errno_error("pipe").message);
    Fd out_r(out[0]), out_w(out[1]);
    if (::pipe2(err, O_CLOEXEC) < 0) return fail(errno_error("pipe").message);
    Fd err_r(err[0]), err_w(err[1]);
    auto s = spawn_vm(vm, boot_command(jail_ ? "" : vm->id, fn->rec.spec, paths), in_r.get(), out_w.get(), err_w.get());
    if (!s) {
      err_w.reset();
      return fail("cannot start ember-vmm: " + s.message() + last_words(read_available(err_r.get())));
    }
    vm->in = std::move(in_w);
    vm->out = std::move(out_r);
    vm->err = std::move(err_r);
    metrics_.lifecycle("boot").Observe(seconds_since(t0));
  } else {
    vm->log_path = vm->run_dir + "/vmm.log";
    paths.vsock_uds = vm->run_dir + "/v.sock";
    // Jailed, the VMM makes its socket in the jail's /run.
    vm->vsock_path = jail_ ? jail_run_path(cfg_.jailer.chroot_base, vm->id, "v.sock") : paths.vsock_uds;
    Fd log(::open(vm->log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!log.valid()) return fail(errno_error("create " + vm->log_path).message);
    vm->max_uses = cfg_.invocations_per_vm;
    auto s = spawn_vm(vm, restore_command(jail_ ? "" : vm->id, vm->max_uses, paths), -1, log.get(), log.get());
    if (!s) return fail("cannot start ember-vmm: " + s.message() + last_words(tail_of_file(vm->log_path)));
    // Parked at ready once its vsock socket accepts and the guest answers.
    const auto deadline = Clock::now() + std::chrono::milliseconds(cfg_.deploy_timeout_ms);
    std::string last;
    for (;;) {
      if (vm->exited()) {
        unregister_vm(vm);
        return fail("the VM exited before it was ready (" + vm->exit_status().describe() + "): " +
                    last_line(tail_of_file(vm->log_path)));
      }
      if (path_exists(vm->vsock_path)) {
        auto c = stdio::connect(vm->vsock_path, deadline);
        if (c) {
          vm->stdio = std::move(*c);
          break;
        }
        last = c.message();
      }
      if (Clock::now() > deadline) {
        retire_vm(vm, "not ready in time");
        return fail("the VM was not ready after " + std::to_string(cfg_.deploy_timeout_ms) + " ms" +
                    (last.empty() ? "" : ": " + last));
      }
      ::usleep(200);
    }
    metrics_.lifecycle("restore").Observe(seconds_since(t0));
  }
  metrics_.vm_starts->Increment();
  vm->state = VmState::kReady;
  return vm;
}

void Controller::register_vm(const std::shared_ptr<Vm>& vm) {
  std::lock_guard<std::mutex> l(mu_);
  vms_[vm->id] = vm;
}

void Controller::unregister_vm(const std::shared_ptr<Vm>& vm) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = vms_.find(vm->id);
  if (it != vms_.end() && it->second == vm) vms_.erase(it);
}

void Controller::retire_vm(const std::shared_ptr<Vm>& vm, const std::string& reason) {
  vm->kill(reason);
  unregister_vm(vm);
}

void Controller::on_vm_exit(const std::shared_ptr<Vm>& vm, ExitStatus st) {
  const VmState was = vm->state.load();
  // The jail's cgroups go once the janitor gets to them: ask them now.
  const bool oom_killed = vm->jailed && st.signaled && st.value == SIGKILL &&
                          jail_oom_kills(cfg_.jailer.chroot_base, vm->id) > 0;
  vm->set_exited(st, vmm_death_verdict(st, oom_killed));
  bool was_parked = false;
  {
    std::lock_guard<std::mutex> l(vm->fn->mu);
    auto& q = vm->fn->ready;
    auto it = std::find(q.begin(), q.end(), vm);
    if (it != q.end()) {
      q.erase(it);
      was_parked = true;
    }
  }
  if (!vm->stop_requested.load() && (was == VmState::kReady || was == VmState::kStarting)) {
    metrics_.vm_deaths->Increment();
    // Why: what killed it, or the VMM's last words (its log or stderr pipe).
    std::string why = vm->death_verdict();
    if (why.empty() && !vm->log_path.empty()) why = last_line(tail_of_file(vm->log_path));
    if (why.empty() && vm->err.valid()) why = last_line(read_available(vm->err.get()));
    log_.warn("VM %s (%s v%llu, pid %d) %s while %s%s%s", vm->id.c_str(), vm->fn->rec.name.c_str(),
              static_cast<unsigned long long>(vm->fn->rec.version), vm->pid, st.describe().c_str(), vm_state_name(was),
              why.empty() ? "" : ": ", why.c_str());
  } else if (!vm->stop_requested.load() && was == VmState::kBusy && st.signaled) {
    metrics_.vm_deaths->Increment();
  }
  // Its process is gone: its room on the host (and its uid) is free.
  vm->slot.release();
  unregister_vm(vm);
  note_slot_event();
  // A parked VM was nobody's: close our ends now, a dead VM's pipes and
  // socket have nothing more to say. Any other is held by an invocation, a
  // refill or a recycle that may be polling those very fds (its state reads
  // kStopping once DELETE or a timeout killed it): the holder lets go of them.
  if (was_parked) {
    vm->in.reset();
    vm->out.reset();
    vm->err.reset();
    vm->stdio = {};
  }
  janitor_add(vm->run_dir, vm->jailed ? vm->id : "");
  if (was_parked) request_refill(vm->fn);
}

std::shared_ptr<Vm> Controller::take_ready(const std::shared_ptr<FunctionVersion>& fn) {
  std::lock_guard<std::mutex> l(fn->mu);
  // The most recently parked first: the VMs at the front then stay idle
  // and the pool's extras can age out (trim_idle_extras).
  while (!fn->ready.empty()) {
    auto vm = std::move(fn->ready.back());
    fn->ready.pop_back();
    if (vm->exited()) continue;
    vm->state = VmState::kBusy;
    return vm;
  }
  return nullptr;
}

void Controller::drain(const std::shared_ptr<FunctionVersion>& fn, const std::string& reason) {
  std::deque<std::shared_ptr<Vm>> vms;
  {
    std::lock_guard<std::mutex> l(fn->mu);
    fn->retired = true;
    vms.swap(fn->ready);
  }
  for (auto& vm : vms) retire_vm(vm, reason);
}

std::string Controller::vmm_failure_text(const std::shared_ptr<Vm>& vm, const std::string& captured_err) {
  std::string line = vm->death_verdict();
  if (line.empty()) line = last_line(captured_err, "ember-vmm: ");
  if (line.empty() && !vm->log_path.empty()) line = last_line(tail_of_file(vm->log_path));
  return line;
}


}  // namespace ember::controller
