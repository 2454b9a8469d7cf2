#include "cli/skiff_options.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "base/version.h"
#include "cli/cpu_options.h"
#include "cli/kv_options.h"
#include "cli/memory_options.h"
#include "cli/net_options.h"
#include "vmm/exit_status.h"

namespace skiff::cli {

namespace {

constexpr const char* kFooter = R"(Exit status:
  0       the guest powered off (ACPI S5), or asked to reboot under --no-reboot
  (v<<1)|1  the guest wrote byte v to I/O port 0xf4 (QEMU isa-debug-exit convention)
  2       invalid arguments or configuration (the message names the bad value)
  4       guest failure: triple fault, unhandled VM exit or KVM emulation failure
          (vCPU registers and the instruction bytes at RIP are logged)
  6       host error: /dev/kvm missing or inaccessible, a KVM capability missing,
          or a KVM call failing while running

A guest reboot (i8042 reset line, ACPI reset register) restarts the guest
unless --no-reboot is given.

With --api-socket, skiff serves Cloud Hypervisor's REST API (/api/v1/...)
on that Unix socket (see skiffctl); without --kernel it waits for vm.create
and vm.boot. It then keeps running after the guest stops, until vmm.shutdown,
and exits with status 0.)";

struct RawOptions {
  std::string kernel, initramfs, cmdline, cpus = "boot=1", memory = "size=512M", serial = "tty";
  std::string log_file, api_socket, event_monitor;
  int verbosity = 0;
  bool no_reboot = false;
  std::vector<std::string> disks;
  std::vector<std::string> numa;
  std::vector<std::string> memory_zones;
  bool memory_given = false;
  std::vector<std::string> nets;
  std::string rng;
  bool rng_given = false;
  std::string balloon;
  std::string console = "off";
  bool serial_given = false;
};

// --console off|null|tty|pty|file=PATH (Cloud Hypervisor's modes, less
// socket). off: no device; null: a device whose output is discarded.
Result<std::optional<ConsoleConfig>> parse_console(const std::string& value) {
  if (value == "off") return std::nullopt;
  if (value == "null") return ConsoleConfig{"off"};
  if (value == "tty" || value == "pty") return ConsoleConfig{value};
  if (value.starts_with("file=")) {
    if (value.size() == 5) return fail("--console: file= needs a path (file=PATH)");
    return ConsoleConfig{value};
  }
  return fail("--console: unknown mode '{}' (expected off, null, tty, pty or file=PATH)", value);
}

// --balloon size=SIZE[,deflate_on_oom=on][,free_page_reporting=on]
//           [,statistics_polling_interval=S] (Cloud Hypervisor's BalloonConfig).
Result<BalloonConfig> parse_balloon(const std::string& value, uint64_t memory_size) {
  auto kv = SKIFF_TRY(
      parse_kv("--balloon", value,
               {"size", "deflate_on_oom", "free_page_reporting", "statistics_polling_interval"}));
  BalloonConfig b;
  auto size = kv.find("size");
  if (size == kv.end()) return fail("--balloon: size=SIZE is required (0 for an empty balloon)");
  b.size = SKIFF_TRY(parse_size("--balloon size", size->second));
  if (b.size > memory_size)
    return fail("--balloon: size={} is larger than guest RAM ({} bytes)", size->second,
                memory_size);
  if (auto it = kv.find("deflate_on_oom"); it != kv.end())
    b.deflate_on_oom = SKIFF_TRY(parse_switch("--balloon deflate_on_oom", it->second));
  if (auto it = kv.find("free_page_reporting"); it != kv.end())
    b.free_page_reporting = SKIFF_TRY(parse_switch("--balloon free_page_reporting", it->second));
  if (auto it = kv.find("statistics_polling_interval"); it != kv.end())
    b.statistics_polling_interval = static_cast<uint32_t>(
        SKIFF_TRY(parse_uint("--balloon statistics_polling_interval", it->second, 0, 86400)));
  return b;
}

// --disk path=P[,readonly=on][,num_queues=N][,queue_size=N][,direct=on][,serial=S][,id=ID]
// --disk vhost_user=on,socket=PATH[,num_queues=N][,queue_size=N][,id=ID]
Result<DiskConfig> parse_disk(const std::string& value) {
  auto kv = SKIFF_TRY(parse_kv("--disk", value,
                               {"path", "readonly", "num_queues", "queue_size", "direct", "serial",
                                "id", "vhost_user", "socket"},
                               "path"));
  DiskConfig d;
  if (auto it = kv.find("vhost_user"); it != kv.end())
    d.vhost_user = SKIFF_TRY(parse_switch("--disk vhost_user", it->second));
  if (d.vhost_user) {
    // The back end owns the image and its options (Cloud Hypervisor's rule).
    for (const char* key : {"path", "readonly", "direct", "serial"})
      if (kv.contains(key))
        return fail(
            "--disk: {}= does not go with vhost_user=on; the vhost-user back end opens "
            "the image (give it {}= there)",
            key, key);
    d.vhost_socket = kv["socket"];
    if (d.vhost_socket.empty())
      return fail("--disk: vhost_user=on needs socket=PATH (the back end's vhost-user socket)");
  } else if (kv.contains("socket")) {
    return fail("--disk: socket={} needs vhost_user=on", kv["socket"]);
  }
  d.path = kv["path"];
  if (d.path.empty() && !d.vhost_user)
    return fail("--disk: path=PATH is required (or vhost_user=on,socket=PATH)");
  if (auto it = kv.find("readonly"); it != kv.end())
    d.read_only = SKIFF_TRY(parse_switch("--disk readonly", it->second));
  if (auto it = kv.find("direct"); it != kv.end())
    d.direct = SKIFF_TRY(parse_switch("--disk direct", it->second));
  // Up to one queue per possible vCPU; queue sizes a power of 2 (virtio 1.2 §2.7).
  if (auto it = kv.find("num_queues"); it != kv.end())
    d.num_queues =
        static_cast<uint16_t>(SKIFF_TRY(parse_uint("--disk num_queues", it->second, 1, 64)));
  if (auto it = kv.find("queue_size"); it != kv.end()) {
    d.queue_size =
        static_cast<uint16_t>(SKIFF_TRY(parse_uint("--disk queue_size", it->second, 2, 32768)));
    if ((d.queue_size & (d.queue_size - 1)) != 0)
      return fail("--disk: queue_size={} is not a power of 2", d.queue_size);
  }
  if (auto it = kv.find("serial"); it != kv.end()) {
    if (it->second.size() > 20)
      return fail("--disk: serial={} is longer than 20 bytes", it->second);
    d.serial = it->second;
  }
  if (auto it = kv.find("id"); it != kv.end()) d.id = it->second;
  return d;
}

// path=PATH, a bare PATH, or fd=N.
Result<SocketSpec> parse_socket_spec(std::string_view option, const std::string& value) {
  auto kv = SKIFF_TRY(parse_kv(option, value, {"path", "fd"}, "path"));
  SocketSpec s;
  if (kv.count("path") + kv.count("fd") != 1)
    return fail("{}: give exactly one of path=PATH or fd=N", option);
  if (auto it = kv.find("fd"); it != kv.end())
    s.fd = static_cast<int>(SKIFF_TRY(parse_uint(option, it->second, 0, 1 << 20)));
  else if ((s.path = kv["path"]).empty())
    return fail("{}: path is empty", option);
  return s;
}

Result<SkiffArgs> to_args(const RawOptions& o) {
  SkiffArgs a;
  a.log_file = o.log_file;
  a.verbosity = o.verbosity;
  a.vm.kernel = o.kernel;
  a.vm.initramfs = o.initramfs;
  a.vm.cmdline = o.cmdline;
  a.vm.no_reboot = o.no_reboot;

  SKIFF_TRY_VOID(parse_cpus(o.cpus, a.vm));
  for (const auto& n : o.numa) a.vm.numa.push_back(SKIFF_TRY(parse_numa(n)));

  SKIFF_TRY_VOID(parse_memory(o.memory, o.memory_given, o.memory_zones, a.vm));

  a.vm.serial = o.serial;
  a.vm.console = SKIFF_TRY(parse_console(o.console));
  // Only one device can own the terminal: --console tty moves the default
  // serial off it (Cloud Hypervisor's defaults: serial null, console tty);
  // asking for both on stdin is an error.
  if (a.vm.console && a.vm.console->backend == "tty") {
    if (o.serial_given && o.serial == "tty")
      return fail(
          "--console tty and --serial tty cannot share the terminal (keystrokes would go to one "
          "or the other at random); put one of them on pty, file=PATH or off");
    if (!o.serial_given) a.vm.serial = "off";
  }
  for (const auto& d : o.disks) a.vm.disks.push_back(SKIFF_TRY(parse_disk(d)));
  // A vhost-user back end maps guest RAM from its fd: private memory has none.
  auto ram_shared = [&] {
    auto shared = [](const RamOptions& r) { return r.shared || r.hugepages; };
    if (a.vm.memory.zones.empty()) return shared(a.vm.memory.backing);
    return std::all_of(a.vm.memory.zones.begin(), a.vm.memory.zones.end(),
                       [&](const MemoryZoneConfig& z) { return shared(z.backing); });
  };
  for (const auto& d : a.vm.disks)
    if (d.vhost_user && !ram_shared())
      return fail(
          "--disk vhost_user=on,socket={} needs guest RAM the back end can map: add --memory "
          "shared=on (or hugepages=on; with --memory-zone, shared=on on every zone)",
          d.vhost_socket);
  for (const auto& n : o.nets) a.vm.nets.push_back(SKIFF_TRY(parse_net(n)));
  if (o.rng_given) {
    RngConfig rng;
    if (!o.rng.empty()) rng.source = SKIFF_TRY(parse_kv("--rng", o.rng, {"src"}, "src"))["src"];
    a.vm.rng = rng;
  }
  if (!o.balloon.empty()) a.vm.balloon = SKIFF_TRY(parse_balloon(o.balloon, a.vm.memory_size));
  if (!o.api_socket.empty())
    a.api_socket = SKIFF_TRY(parse_socket_spec("--api-socket", o.api_socket));
  if (!o.event_monitor.empty())
    a.event_monitor = SKIFF_TRY(parse_socket_spec("--event-monitor", o.event_monitor));
  a.has_kernel = !a.vm.kernel.empty();
  if (!a.has_kernel && !a.api_socket)
    return fail(
        "--kernel is required (a bzImage, PVH ELF or Multiboot kernel), unless --api-socket is "
        "given");
  return a;
}

}  // namespace

std::variant<SkiffArgs, EarlyExit> parse_skiff_args(std::vector<std::string> argv) {
  RawOptions o;
  CLI::App app{
      "skiff: a KVM virtual machine monitor. Boots a Linux bzImage, a PVH ELF or a "
      "Multiboot kernel on an x86-64 machine with ACPI, a 16550 serial port, an "
      "in-kernel interrupt controller and virtio devices on PCI (disk, net, rng, "
      "console, balloon).",
      "skiff"};
  app.set_version_flag("--version", fmt::format("skiff v{}", kVersion),
                       "Print the version and exit");
  app.add_option("--kernel", o.kernel,
                 "Kernel to boot: bzImage, ELF with a PVH note, or Multiboot v1 ELF")
      ->type_name("PATH");
  app.add_option("--initramfs", o.initramfs,
                 "Initial ramdisk (Linux initrd, PVH module 0, Multiboot module)")
      ->type_name("PATH");
  app.add_option("--cmdline", o.cmdline, "Kernel command line")->type_name("STR");
  app.add_option("--cpus", o.cpus,
                 "vCPUs: boot=N (1-255, default 1); max=M (default N: vCPUs above N are "
                 "listed in ACPI as hotpluggable, but hotplug is not implemented yet); "
                 "topology=T:C:D:P threads per core, cores per die, dies per package, packages "
                 "(product = max; seen in CPUID 0xB/0x1F and the MADT's APIC IDs); "
                 "affinity=[V@[H,...],...] pins vCPU V's thread to host CPUs H (lists take "
                 "ranges, e.g. 0@[2-3],1@[4]; host CPUs must be ones skiff may run on)")
      ->type_name("boot=N[,max=M][,topology=T:C:D:P][,affinity=[...]]");
  app.add_option("--memory", o.memory,
                 "Guest RAM: size=SIZE with an optional K/M/G/T suffix (default 512M, minimum "
                 "8M; 0 with --memory-zone); shared=on (memfd, MAP_SHARED: needed by vhost-user "
                 "devices); hugepages=on (hugetlb memfd from the host's reserved pool, which "
                 "must have enough free pages: skiff refuses rather than fall back), "
                 "hugepage_size=2M|1G (default 2M); mergeable=on (KSM may merge identical "
                 "pages; private memory only); prefault=on (allocate all RAM at start); "
                 "host_numa_node=N (mbind to host node N); thp=on|off (advise transparent huge "
                 "pages; default: the host's policy)")
      ->type_name("size=SIZE[,...]");
  app.add_option("--memory-zone", o.memory_zones,
                 "A piece of guest RAM with its own backing (repeatable; needs --memory size=0 "
                 "or no --memory): id=ID (for --numa memory_zones), size=SIZE, and shared, "
                 "hugepages, hugepage_size, mergeable, prefault, host_numa_node as for "
                 "--memory; file=PATH backs the zone with a file (shared=on: MAP_SHARED, a "
                 "missing file is created and a short one extended; otherwise MAP_PRIVATE of an "
                 "existing file of at least SIZE) or, if PATH is a directory such as a hugetlbfs "
                 "or tmpfs mount, with an unlinked temporary file there. Zones follow each other "
                 "in guest physical memory in the order given (split at the PCI hole below 4 "
                 "GiB)")
      ->type_name("id=ID,size=SIZE[,...]");
  app.add_option("--numa", o.numa,
                 "Guest NUMA node (repeatable; ACPI SRAT and SLIT): guest_numa_id=N (0..nodes-1), "
                 "cpus=[0-1,4] its vCPUs, memory_zones=[z0,...] its --memory-zone ids (without "
                 "any, all RAM is on node 0), distances=[1@20,...] SLIT distances to other "
                 "nodes (11-255, default 20; 10 to itself)")
      ->type_name("guest_numa_id=N[,...]");
  app.add_option("--serial", o.serial,
                 "16550 UART at 0x3f8 (COM1): tty (stdin/stdout, raw mode on a terminal), "
                 "pty (prints the pty path), file=PATH (output only), off (default tty)")
      ->type_name("MODE");
  app.add_option("--console", o.console,
                 "virtio-console on PCI, the guest's hvc0 (Linux: console=hvc0): tty "
                 "(stdin/stdout; the serial port then defaults to off, and --serial tty with it is "
                 "refused), pty (prints the pty path), file=PATH (output only), null (device "
                 "present, output discarded), off (no device; the default)")
      ->type_name("MODE");
  app.add_option("--api-socket", o.api_socket,
                 "Serve the REST API (Cloud Hypervisor's) on a Unix socket: path=PATH, or fd=N "
                 "for an already-listening socket inherited from the parent")
      ->type_name("path=PATH|fd=N");
  app.add_option(
         "--event-monitor", o.event_monitor,
         "Write one JSON object per lifecycle event (booting, booted, pausing, paused, "
         "resumed, shutdown, reboot, virtio-device activated/reset, ...) to path=PATH or fd=N")
      ->type_name("path=PATH|fd=N");
  app.add_option("--log-file", o.log_file, "Write skiff's log to PATH instead of stderr")
      ->type_name("PATH");
  app.add_flag("-v", o.verbosity, "More log output: -v info, -vv debug, -vvv trace");
  app.add_flag("--no-reboot", o.no_reboot,
               "Exit with status 0 when the guest reboots, instead of restarting it");
  app.add_option("--disk", o.disks,
                 "virtio-blk disk on PCI (repeatable): path=PATH (raw or qcow2), readonly=on, "
                 "num_queues=N (default: one per vCPU), queue_size=N (power of 2, default 256), "
                 "direct=on (O_DIRECT, bypassing the host page cache; raw images only), serial=S, "
                 "id=ID; or vhost_user=on,socket=PATH to have an external vhost-user-blk back "
                 "end (qemu-storage-daemon, skiff-vhost blk) serve the disk (needs --memory "
                 "shared=on; num_queues defaults to min(vCPUs, what the back end serves))")
      ->type_name("path=PATH[,...]");
  app.add_option("--net", o.nets,
                 "virtio-net on PCI (repeatable): tap=NAME (an existing tap, or created) or "
                 "fd=[N,...] (open tap queue fds, one per queue pair); mac=MAC (default: random, "
                 "locally administered), num_queues=N (rx+tx virtqueues, 2 per pair; default one "
                 "pair per vCPU), queue_size=N (power of 2, default 256), vhost=on (the kernel's "
                 "vhost-net moves the frames, /dev/vhost-net; where it cannot be opened skiff "
                 "says why and uses its own data path; not with rate limits), id=ID; token "
                 "buckets per direction: bw_size=BYTES,bw_refill_time=MS"
                 "[,bw_one_time_burst=BYTES] and ops_size=PACKETS,ops_refill_time=MS"
                 "[,ops_one_time_burst=PACKETS] (each direction of each queue pair; frames over "
                 "the rate wait, none are dropped)")
      ->type_name("tap=NAME|fd=[N,...][,...]");
  auto* rng = app.add_option("--rng", o.rng,
                             "virtio-rng on PCI: entropy from getrandom(2), or from src=PATH "
                             "(e.g. /dev/urandom)")
                  ->type_name("[src=PATH]")
                  ->expected(0, 1);
  app.add_option("--balloon", o.balloon,
                 "virtio-balloon on PCI: size=SIZE (guest RAM to take back at boot, 0 for none; "
                 "changed at run time by vm.resize desired_balloon), deflate_on_oom=on (the guest "
                 "may deflate under memory pressure), free_page_reporting=on (the guest reports "
                 "free pages, which go back to the host), statistics_polling_interval=S (ask for "
                 "guest memory statistics every S seconds; shown in vm.counters)")
      ->type_name("size=SIZE[,...]");
  app.footer(kFooter);

  std::vector<std::string> rev(argv.rbegin(),
                               argv.rend() - 1);  // CLI11 takes reversed args without argv[0]
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    return EarlyExit{0, app.help()};
  } catch (const CLI::CallForVersion&) {
    return EarlyExit{0, fmt::format("skiff v{}\n", kVersion)};
  } catch (const CLI::ParseError& e) {
    return EarlyExit{kExitUsage,
                     fmt::format("skiff: {}\nRun 'skiff --help' for the options.\n", e.what())};
  }
  o.rng_given = rng->count() > 0;
  o.serial_given = app.count("--serial") > 0;
  o.memory_given = app.count("--memory") > 0;
  auto args = to_args(o);
  if (!args) return EarlyExit{kExitUsage, fmt::format("skiff: {}\n", args.error().what())};
  return *args;
}

}  // namespace skiff::cli
