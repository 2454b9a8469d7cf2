#include "vmm/pci_devices.h"

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include "arch/x86/layout.h"
#include "arch/x86/pci_irq.h"
#include "base/fd.h"
#include "base/log.h"
#include "block/open_image.h"
#include "chardev/char_backend.h"
#include "chardev/input_pump.h"
#include "devices/pci/pci_root.h"
#include "vhost_user/frontend_blk.h"
#include "virtio/devices/balloon.h"
#include "virtio/devices/blk.h"
#include "virtio/devices/console.h"
#include "virtio/devices/net.h"
#include "virtio/devices/rng.h"
#include "virtio/transport/pci/virtio_pci.h"
#include "vmm/machine_devices.h"
#include "vmm/net_devices.h"
#include "vmm/pci_intx.h"
#include "vmm/virtio_worker.h"

namespace skiff {

// --- VmPlumbing

void VmPlumbing::send_msi(uint64_t address, uint32_t data) {
  std::shared_lock lock(vm_mu_);
  if (!vm_) return;  // between VMs (reboot): the message is lost, as on real reset
  {
    std::shared_lock routes(routes_mu_);
    if (auto it = routes_.find({address, data}); it != routes_.end()) {
      it->second.fd.signal();
      return;
    }
  }
  {
    std::unique_lock routes(routes_mu_);
    auto it = routes_.find({address, data});  // another thread may have added it
    const Route* route = it != routes_.end() ? &it->second : add_route_locked(address, data);
    if (route) {
      route->fd.signal();
      return;
    }
  }
  auto r = vm_->signal_msi(address, data);
  // A guest that programs a bogus MSI address gets nothing; say so once.
  if (!r && !msi_error_logged_.exchange(true)) LOG_WARN("pci: {}", r.error().what());
}

const VmPlumbing::Route* VmPlumbing::add_route_locked(uint64_t address, uint32_t data) {
  if (routing_failed_ || routes_.size() >= kMaxMsiRoutes) return nullptr;
  // KVM's default routing (virt/kvm irq_comm.c default_routing[]): GSIs
  // 0-15 to the IOAPIC pin and the PIC pin, 16-23 to the IOAPIC only.
  // KVM_SET_GSI_ROUTING replaces the table, so these are restated.
  std::vector<kvm_irq_routing_entry> table;
  for (uint32_t gsi = 0; gsi < kFirstMsiGsi; ++gsi) {
    table.push_back(kvm::Vm::irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    if (gsi < 16)
      table.push_back(kvm::Vm::irqchip_route(
          gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8));
  }
  uint32_t gsi = kFirstMsiGsi + static_cast<uint32_t>(routes_.size());
  for (const auto& [msg, route] : routes_)
    table.push_back(kvm::Vm::msi_route(route.gsi, msg.first, msg.second));
  table.push_back(kvm::Vm::msi_route(gsi, address, data));
  auto fail_over = [&](const Error& e) -> const Route* {
    routing_failed_ = true;
    LOG_WARN("pci: MSI through irqfd unavailable, using KVM_SIGNAL_MSI: {}", e.what());
    return nullptr;
  };
  auto fd = EventFd::create(0, EFD_NONBLOCK);
  if (!fd) return fail_over(fd.error());
  if (auto r = vm_->set_gsi_routing(table); !r) return fail_over(r.error());
  if (auto r = vm_->register_irqfd(fd->get(), gsi); !r) return fail_over(r.error());
  auto [it, inserted] = routes_.emplace(std::pair{address, data}, Route{gsi, std::move(*fd)});
  return &it->second;
}

void VmPlumbing::vm_destroyed() {
  std::unique_lock routes(routes_mu_);
  routes_.clear();
  routing_failed_ = false;
}

size_t VmPlumbing::msi_routes() const {
  std::shared_lock routes(routes_mu_);
  return routes_.size();
}

Result<> VmPlumbing::bind_ioevent(uint64_t address, uint32_t len, int eventfd) {
  std::shared_lock lock(vm_mu_);
  if (!vm_) return fail("no VM");
  return vm_->register_ioeventfd(address, len, eventfd);
}

void VmPlumbing::unbind_ioevent(uint64_t address, uint32_t len, int eventfd) {
  std::shared_lock lock(vm_mu_);
  if (vm_) (void)vm_->unregister_ioeventfd(address, len, eventfd);
}

pci::BarWindow pci_mmio64_window(uint64_t memory_size) {
  constexpr uint64_t kAlign = x86::kGiB;
  constexpr uint64_t kSize = 32 * x86::kGiB;
  constexpr uint64_t kLimit = 1ull << 39;
  uint64_t high = memory_size > x86::kMaxLowRam ? memory_size - x86::kMaxLowRam : 0;
  uint64_t start = (x86::kRam64Start + high + kAlign - 1) & ~(kAlign - 1);
  if (start > kLimit - kSize) return {};
  return {start, start + kSize};
}

// A disk served by an external vhost-user-blk back end (vhost_user/frontend_blk.h).
// The back end maps guest RAM from its fds, so every region must have one.
static Result<std::unique_ptr<virtio::VirtioDevice>> make_vhost_user_disk(const DiskConfig& d,
                                                                          uint32_t boot_cpus,
                                                                          const GuestMemory& mem) {
  for (const MemoryRegion& r : mem.regions())
    if (r.fd < 0)
      return fail(
          "guest RAM at {:#x} is private memory the vhost-user back end cannot map: add --memory "
          "shared=on (or hugepages=on)",
          r.gpa);
  vhost_user::VhostUserBlkOptions o;
  o.socket = d.vhost_socket;
  o.num_queues = d.num_queues;
  o.default_queues = static_cast<uint16_t>(std::min<uint32_t>(boot_cpus, 64));
  o.queue_size = d.queue_size;
  return SKIFF_TRY(vhost_user::VhostUserBlock::create(o));
}

// --- PciDevices

Result<std::unique_ptr<PciDevices>> PciDevices::create(const VmConfig& config,
                                                       const GuestMemory& mem, Bus& pio, Bus& mmio,
                                                       VmPlumbing& plumbing,
                                                       std::function<void(uint32_t, bool)> set_irq,
                                                       VirtioEventSink device_events) {
  std::unique_ptr<PciDevices> p(new PciDevices(pio, mmio));
  p->device_events_ = std::move(device_events);
  // 32-bit BARs in the hole below the ECAM; 64-bit prefetchable ones
  // above RAM (the same windows as the DSDT's _CRS, Machine::build).
  p->root_ =
      std::make_unique<pci::PciRoot>(mmio, pci::BarWindow{x86::kPciMmio32Start, x86::kPciMmio32End},
                                     pci_mmio64_window(config.memory_size));
  SKIFF_TRY_VOID(pio.insert(p->root_->config_io(), x86::kPortPciConfigAddr, 8));
  SKIFF_TRY_VOID(mmio.insert(p->root_->ecam(), x86::kPciEcamBase, x86::kPciEcamSize));

  // INTA# of each function on the GSI the DSDT's _PRT gives its slot
  // (x86::pci_intx_gsi), also written to Interrupt Line. The root fills
  // slots in order from 1 (0 is the host bridge); add() checks that.
  p->intx_ = std::make_unique<PciIntxRouter>(std::move(set_irq));
  auto make = [&](std::unique_ptr<virtio::VirtioDevice> dev)
      -> Result<std::shared_ptr<virtio::VirtioPciDevice>> {
    if (p->devices_.size() + 1 >= x86::kPciSlots)
      return fail("PCI bus 0 is full ({} devices)", x86::kPciSlots - 1);
    auto slot = static_cast<uint8_t>(p->devices_.size() + 1);
    auto gsi = static_cast<uint8_t>(x86::pci_intx_gsi(slot, 0));
    return virtio::VirtioPciDevice::create(std::move(dev), mem, plumbing, plumbing,
                                           p->intx_->line(slot, 0), gsi);
  };

  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskConfig& d = config.disks[i];
    if (d.vhost_user) {
      std::string what = fmt::format("--disk vhost_user=on,socket={}", d.vhost_socket);
      auto blk = make_vhost_user_disk(d, config.boot_cpus, mem);
      if (!blk) return context(blk.error(), what);
      auto dev = make(std::move(*blk));
      if (!dev) return context(dev.error(), what);
      SKIFF_TRY_VOID(p->add(std::move(*dev), fmt::format("blk{}", i)));
      continue;
    }
    std::string what = fmt::format("--disk path={}", d.path);
    auto image = open_image(d.path, OpenImageOptions{.read_only = d.read_only, .direct = d.direct});
    if (!image) return context(image.error(), what);
    virtio::BlkOptions opts;
    opts.serial = d.serial.empty() ? d.id : d.serial;
    opts.read_only = d.read_only;
    opts.num_queues = d.num_queues != 0
                          ? d.num_queues
                          : static_cast<uint16_t>(std::min<uint32_t>(config.boot_cpus, 64));
    opts.queue_size = d.queue_size;
    auto blk = virtio::VirtioBlock::create(std::move(*image), opts);
    if (!blk) return context(blk.error(), what);
    auto dev = make(std::move(*blk));
    if (!dev) return context(dev.error(), what);
    SKIFF_TRY_VOID(p->add(std::move(*dev), fmt::format("blk{}", i)));
  }
  // virtio-net: one function and one I/O thread (net0, ...) per --net; the
  // thread also wakes on the tap queues (VirtioNet::backend_events), or on
  // vhost-net's call eventfds with vhost=on (VhostNetDevice).
  for (size_t i = 0; i < config.nets.size(); ++i) {
    auto net = make_net_device(config.nets[i], config.boot_cpus, mem);
    if (!net) return std::unexpected(net.error());
    auto dev = make(std::move(*net));
    if (!dev) return context(dev.error(), describe_net(config.nets[i]));
    SKIFF_TRY_VOID(p->add(std::move(*dev), fmt::format("net{}", i)));
  }
  if (config.rng) {
    std::optional<std::string> src;
    if (!config.rng->source.empty()) src = config.rng->source;
    auto rng = virtio::VirtioRng::create(src);
    if (!rng) return context(rng.error(), "--rng");
    auto dev = make(std::move(*rng));
    if (!dev) return context(dev.error(), "--rng");
    SKIFF_TRY_VOID(p->add(std::move(*dev), "rng0"));
  }
  if (config.console) {
    auto con = p->create_console(config);
    if (!con) return context(con.error(), "--console");
    auto dev = make(std::move(*con));
    if (!dev) return context(dev.error(), "--console");
    SKIFF_TRY_VOID(p->add(std::move(*dev), "console0"));
  }
  if (config.balloon) {
    const BalloonConfig& b = *config.balloon;
    auto balloon =
        virtio::VirtioBalloon::create({.initial_target_bytes = b.size,
                                       .deflate_on_oom = b.deflate_on_oom,
                                       .free_page_reporting = b.free_page_reporting,
                                       .stats_interval_s = b.statistics_polling_interval});
    if (!balloon) return context(balloon.error(), "--balloon");
    virtio::VirtioBalloon* raw = balloon->get();  // owned by its VirtioPciDevice
    auto dev = make(std::move(*balloon));
    if (!dev) return context(dev.error(), "--balloon");
    SKIFF_TRY_VOID(p->add(std::move(*dev), "balloon0"));
    p->balloon_ = raw;
  }
  return p;
}

Result<std::unique_ptr<virtio::VirtioDevice>> PciDevices::create_console(const VmConfig& config) {
  std::string_view mode = config.console->backend;
  // Both on stdin would split the user's keystrokes between them.
  if (mode == "tty" && config.serial == "tty")
    return fail(
        "tty: the serial port already uses the terminal (--serial tty, its default); give "
        "--serial off|pty|file=PATH, or --console pty|file=PATH");
  auto spec = SKIFF_TRY(parse_char_backend_spec(mode, "--console"));
  console_backend_ = SKIFF_TRY(CharBackend::open(spec, "console"));
  CharBackend* backend = console_backend_.get();
  // F_SIZE (virtio 1.2 §5.3.4) only for a terminal we can measure.
  std::optional<virtio::ConsoleSize> size;
  winsize ws{};
  if (spec.mode == CharBackendMode::kTty && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
      ws.ws_col != 0 && ws.ws_row != 0)
    size = virtio::ConsoleSize{ws.ws_col, ws.ws_row};
  auto con = SKIFF_TRY(virtio::VirtioConsole::create(
      [backend](std::span<const uint8_t> bytes) { backend->write(bytes); }, size));
  if (backend->mode() == CharBackendMode::kPty)
    LOG_WARN("console: virtio-console (the guest's hvc0) is on {}", backend->pty_path());
  if (backend->input_fd() >= 0) {
    virtio::VirtioConsole* c = con.get();  // owned by its VirtioPciDevice, which outlives the pump
    console_input_ = SKIFF_TRY(InputPump::start(
        backend->input_fd(), [c](std::span<const uint8_t> b) { c->enqueue_input(b); },
        "console-in"));
  }
  return std::unique_ptr<virtio::VirtioDevice>(std::move(con));
}

Result<> PciDevices::add(std::shared_ptr<virtio::VirtioPciDevice> dev, std::string name) {
  uint8_t slot = SKIFF_TRY(root_->add_device(dev));
  if (slot != devices_.size() + 1)  // make() wired INTx for that slot
    return fail("pci: {} landed in slot {}, not {}", name, slot, devices_.size() + 1);
  LOG_INFO("pci: 00:{:02x}.0 virtio {} ({})", slot, dev->device().name(), name);
  dev->device().set_event_callback(forward_device_events(name, device_events_));
  std::vector<int> kicks;
  for (uint16_t q = 0; q < dev->num_queues(); ++q) kicks.push_back(dev->queue_eventfd(q));
  auto worker =
      SKIFF_TRY(VirtioWorker::start(name, std::move(kicks), dev->device().backend_events(),
                                    [dev](uint16_t q) { dev->process_queue(q); }));
  devices_.push_back(Entry{std::move(name), std::move(dev), std::move(worker)});
  return {};
}

PciDevices::PciDevices(Bus& pio, Bus& mmio) : pio_(pio), mmio_(mmio) {}

PciDevices::~PciDevices() {
  // Threads first (they call into the devices), then the bus entries.
  console_input_.reset();
  for (auto& e : devices_) e.worker.reset();
  (void)pio_.remove(x86::kPortPciConfigAddr);
  (void)mmio_.remove(x86::kPciEcamBase);
}

void PciDevices::reset() {
  root_->reset();
}

std::map<std::string, std::map<std::string, uint64_t>> PciDevices::counters() const {
  std::map<std::string, std::map<std::string, uint64_t>> out;
  for (const auto& e : devices_) {
    std::map<std::string, uint64_t>& c = out[e.name];
    auto n = e.device->notify_counters();
    c["notifies"] = n.notifies;
    c["notify_exits"] = n.notify_exits;
    add_net_counters(e.device->device(), c);
    if (auto* con = dynamic_cast<virtio::VirtioConsole*>(&e.device->device())) {
      auto cc = con->counters();
      c["tx_bytes"] = cc.tx_bytes;
      c["rx_bytes"] = cc.rx_bytes;
      c["dropped_input_bytes"] = cc.dropped_input_bytes;
      continue;
    }
    if (auto* balloon = dynamic_cast<virtio::VirtioBalloon*>(&e.device->device())) {
      const auto& bc = balloon->counters();
      c["target_bytes"] = balloon->target_bytes();
      c["actual_bytes"] = balloon->actual_bytes();
      c["inflated_pages"] = bc.inflated_pages.load(std::memory_order_relaxed);
      c["deflated_pages"] = bc.deflated_pages.load(std::memory_order_relaxed);
      c["reported_bytes"] = bc.reported_bytes.load(std::memory_order_relaxed);
      c["ignored_pfns"] = bc.ignored_pfns.load(std::memory_order_relaxed);
      c["discard_errors"] = bc.discard_errors.load(std::memory_order_relaxed);
      c["stats_updates"] = bc.stats_updates.load(std::memory_order_relaxed);
      // Guest statistics (virtio 1.2 §5.5.6.3), those the driver reported.
      for (size_t tag = 0; tag < virtio::kBalloonStatCount; ++tag)
        if (auto v = balloon->stat(tag)) c[std::string(virtio::balloon_stat_name(tag))] = *v;
      continue;
    }
    auto* blk = dynamic_cast<virtio::VirtioBlock*>(&e.device->device());
    if (!blk) continue;
    for (uint16_t q = 0; q < blk->num_queues(); ++q) {
      const auto& s = blk->stats(q);
      c["read_ops"] += s.read_ops;
      c["read_bytes"] += s.read_bytes;
      c["write_ops"] += s.write_ops;
      c["write_bytes"] += s.write_bytes;
      c["flush_ops"] += s.flush_ops;
      c["errors"] += s.errors;
    }
  }
  return out;
}

}  // namespace skiff
