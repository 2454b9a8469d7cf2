// Serial16550: a 16550A UART (COM port), as Linux's 8250 driver and simple
// polling guests use it.
//
// Datasheet: TI PC16550D "Universal Asynchronous Receiver/Transmitter with
// FIFOs" (SNLS378). Register offsets from the base (8 ports):
//   0 RBR (read) / THR (write) / DLL (LCR.DLAB=1)   4 MCR
//   1 IER / DLM (LCR.DLAB=1)                        5 LSR
//   2 IIR (read) / FCR (write)                      6 MSR
//   3 LCR                                           7 SCR
//
// Emulated: divisor latch (stored, no effect), a 16-byte RX FIFO with the
// FCR enable / RX-clear bits and trigger level, IIR FIFO bits (0xC0),
// interrupt sources in datasheet priority (receiver line status, RX data,
// THRE, modem status), the "THRE interrupt when ETBEI is set while THR is
// empty" behaviour Linux's startup test relies on, loopback (MCR bit 4) with
// the modem lines wired as the datasheet says (Linux's autoconfig probes it),
// MSR with DCD/DSR/CTS asserted and delta bits, scratch register, overrun.
//
// Ignored: baud rate, word length, parity and stop bits (bytes move
// instantly, so THRE/TEMT are always set after a write), the TX FIFO (there is
// nothing to queue), DMA mode, break, parity/framing errors. The RX FIFO
// character-timeout interrupt (IIR 0x0C) is reported at once whenever data
// below the trigger level is waiting, instead of after four character times.
// OUT2 does not gate the IRQ line (as in QEMU): guests that enable IER
// without OUT2 still get interrupts.
//
// Threads: vCPU threads call read()/write(); a host thread calls
// enqueue_input(). One mutex guards all state; the output sink and the IRQ
// line are called with it held, so output order and IRQ level always match
// the register state. Neither may call back into the device.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/interrupt.h"

namespace skiff {

class Serial16550 : public BusDevice {
 public:
  using OutputSink = std::function<void(std::span<const uint8_t>)>;

  static constexpr uint64_t kSize = 8;                   // ports claimed on the bus
  static constexpr size_t kFifoSize = 16;                // 16550A RX FIFO depth
  static constexpr size_t kMaxPendingInput = 64 * 1024;  // host-side input buffer

  // irq must outlive the device. sink receives every byte the guest
  // transmits (not loopback bytes); it may be empty to discard output.
  Serial16550(IrqLine& irq, OutputSink sink);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host -> guest bytes (keyboard, pty). Bytes that do not fit in the RX FIFO
  // wait in a host buffer of kMaxPendingInput bytes; beyond that they are
  // dropped and counted. Callable from any thread.
  void enqueue_input(std::span<const uint8_t> bytes);

  // Power-on state of the registers (guest reboot). Pending host input is kept.
  void reset();

  // Bytes dropped because the host-side input buffer was full.
  [[nodiscard]] uint64_t dropped_input_bytes() const;

  // I/O counters for the API (vm.counters): bytes the guest transmitted to
  // the host (not loopback), bytes it read from RBR (loopback included), and
  // host input dropped. They survive reset().
  struct Counters {
    uint64_t tx_bytes = 0;
    uint64_t rx_bytes = 0;
    uint64_t dropped_input_bytes = 0;
  };
  [[nodiscard]] Counters counters() const;

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  void transmit(uint8_t byte);
  void write_mcr(uint8_t value);
  void refill_fifo();
  [[nodiscard]] size_t fifo_capacity() const;
  [[nodiscard]] uint8_t modem_status_lines() const;
  [[nodiscard]] uint8_t pending_interrupt() const;  // IIR identification bits
  void update_irq();
  void reset_locked();

  IrqLine& irq_;
  OutputSink sink_;

  mutable std::mutex mu_;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t scr_ = 0;
  uint8_t fcr_ = 0;  // last FCR value with FIFO enable; only bits 0, 6-7 matter
  uint8_t dll_ = 0;
  uint8_t dlm_ = 0;
  bool overrun_ = false;      // LSR.OE, cleared by reading LSR
  bool thr_pending_ = false;  // THRE interrupt latched, cleared by IIR read / THR write
  uint8_t msr_delta_ = 0;     // MSR bits 0-3, cleared by reading MSR
  std::deque<uint8_t> rx_fifo_;
  std::deque<uint8_t> pending_input_;
  uint64_t dropped_input_ = 0;
  uint64_t tx_bytes_ = 0;
  uint64_t rx_bytes_ = 0;
  bool irq_level_ = false;
};

}  // namespace skiff
