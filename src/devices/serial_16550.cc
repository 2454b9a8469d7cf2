#include "devices/serial_16550.h"

#include <algorithm>
#include <bit>

#include "base/log.h"

namespace skiff {

namespace {

// Register offsets (PC16550D §8.1, Table 2).
constexpr uint64_t kRbrThrDll = 0;
constexpr uint64_t kIerDlm = 1;
constexpr uint64_t kIirFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

// IER (§8.5): only the low four bits exist; Linux's autoconfig checks that
// writing 0x0F reads back 0x0F and the upper bits read 0.
constexpr uint8_t kIerRxData = 0x01;
constexpr uint8_t kIerThre = 0x02;
constexpr uint8_t kIerLineStatus = 0x04;
constexpr uint8_t kIerModemStatus = 0x08;
constexpr uint8_t kIerMask = 0x0f;

// IIR (§8.6, Table 4): bit 0 = no interrupt pending; bits 1-3 identify the
// highest-priority source; bits 6-7 are set while FIFOs are enabled.
constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirLineStatus = 0x06;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirRxTimeout = 0x0c;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirModemStatus = 0x00;
constexpr uint8_t kIirFifoEnabled = 0xc0;

// FCR (§8.4): bit 0 enables both FIFOs (and changing it clears them), bit 1
// clears the RX FIFO, bit 2 the TX FIFO, bits 6-7 the RX trigger level.
constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

// MCR (§8.7).
constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

// LSR (§8.8).
constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrOverrun = 0x02;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

// MSR (§8.9): bits 4-7 are the line states, bits 0-3 their deltas.
constexpr uint8_t kMsrDcts = 0x01;
constexpr uint8_t kMsrDdsr = 0x02;
constexpr uint8_t kMsrTeri = 0x04;
constexpr uint8_t kMsrDdcd = 0x08;
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

// RX trigger levels selected by FCR bits 6-7 (§8.4, Table 3).
constexpr size_t kRxTrigger[4] = {1, 4, 8, 14};

}  // namespace

Serial16550::Serial16550(IrqLine& irq, OutputSink sink) : irq_(irq), sink_(std::move(sink)) {
  std::lock_guard lock(mu_);
  reset_locked();
}

void Serial16550::reset() {
  std::lock_guard lock(mu_);
  reset_locked();
}

void Serial16550::reset_locked() {
  // Master reset values (§8.10, Table 5): everything 0 except LSR THRE/TEMT
  // (derived) and the divisor, which the datasheet leaves undefined.
  ier_ = 0;
  lcr_ = 0;
  mcr_ = 0;
  scr_ = 0;
  fcr_ = 0;
  dll_ = 0x0c;  // 9600 baud at 1.8432 MHz, what a PC BIOS leaves behind
  dlm_ = 0;
  overrun_ = false;
  thr_pending_ = false;
  msr_delta_ = 0;
  rx_fifo_.clear();
  refill_fifo();
  update_irq();
}

uint64_t Serial16550::dropped_input_bytes() const {
  std::lock_guard lock(mu_);
  return dropped_input_;
}

Serial16550::Counters Serial16550::counters() const {
  std::lock_guard lock(mu_);
  return Counters{tx_bytes_, rx_bytes_, dropped_input_};
}

void Serial16550::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  // A wider access on the ISA bus reads consecutive registers.
  for (size_t i = 0; i < data.size(); ++i) data[i] = read_register(offset + i);
  update_irq();
}

void Serial16550::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) write_register(offset + i, data[i]);
  update_irq();
}

void Serial16550::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  // Bytes go straight into the FIFO while it has room (pending_input_ is
  // only non-empty when the FIFO is full, so order is kept); the rest wait.
  refill_fifo();
  while (!bytes.empty() && pending_input_.empty() && rx_fifo_.size() < fifo_capacity()) {
    rx_fifo_.push_back(bytes.front());
    bytes = bytes.subspan(1);
  }
  size_t room = kMaxPendingInput - pending_input_.size();
  size_t take = std::min(room, bytes.size());
  pending_input_.insert(pending_input_.end(), bytes.begin(), bytes.begin() + take);
  if (take < bytes.size()) {
    uint64_t before = dropped_input_;
    dropped_input_ += bytes.size() - take;
    // Warn on the first drop and then at every power of two, so a guest
    // that never reads its UART cannot flood the log.
    if (std::bit_floor(before) != std::bit_floor(dropped_input_))
      LOG_WARN("serial: guest is not reading input; dropped {} bytes so far", dropped_input_);
  }
  refill_fifo();
  update_irq();
}

size_t Serial16550::fifo_capacity() const {
  // With FIFOs disabled the 16550 behaves like a 16450: one holding register.
  return (fcr_ & kFcrEnable) ? kFifoSize : 1;
}

void Serial16550::refill_fifo() {
  // Host input is "on the wire" until the FIFO has room, so it is never
  // overrun; only loopback (guest-paced) can overrun the FIFO.
  while (rx_fifo_.size() < fifo_capacity() && !pending_input_.empty()) {
    rx_fifo_.push_back(pending_input_.front());
    pending_input_.pop_front();
  }
}

uint8_t Serial16550::modem_status_lines() const {
  if (mcr_ & kMcrLoop) {
    // Loopback (§8.7): CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2.
    uint8_t lines = 0;
    if (mcr_ & kMcrRts) lines |= kMsrCts;
    if (mcr_ & kMcrDtr) lines |= kMsrDsr;
    if (mcr_ & kMcrOut1) lines |= kMsrRi;
    if (mcr_ & kMcrOut2) lines |= kMsrDcd;
    return lines;
  }
  // A connected null-modem: carrier, data set ready and clear to send.
  return kMsrDcd | kMsrDsr | kMsrCts;
}

void Serial16550::write_mcr(uint8_t value) {
  uint8_t before = modem_status_lines();
  mcr_ = value & kMcrMask;
  uint8_t after = modem_status_lines();
  uint8_t changed = before ^ after;
  if (changed & kMsrCts) msr_delta_ |= kMsrDcts;
  if (changed & kMsrDsr) msr_delta_ |= kMsrDdsr;
  if (changed & kMsrDcd) msr_delta_ |= kMsrDdcd;
  // TERI is set on the trailing edge of RI only.
  if ((before & kMsrRi) && !(after & kMsrRi)) msr_delta_ |= kMsrTeri;
}

void Serial16550::transmit(uint8_t byte) {
  if (mcr_ & kMcrLoop) {
    // Loopback: the transmitter feeds the receiver; a full FIFO overruns
    // (the new byte is lost, §8.8 bit 1).
    if (rx_fifo_.size() < fifo_capacity()) {
      rx_fifo_.push_back(byte);
    } else {
      overrun_ = true;
    }
  } else {
    ++tx_bytes_;
    if (sink_) sink_(std::span<const uint8_t>(&byte, 1));
  }
  // Transmission is instantaneous: THR is empty again and THRE latches.
  thr_pending_ = true;
}

uint8_t Serial16550::pending_interrupt() const {
  // Priority order of §8.6 Table 4.
  if ((ier_ & kIerLineStatus) && overrun_) return kIirLineStatus;
  if ((ier_ & kIerRxData) && !rx_fifo_.empty()) {
    if (!(fcr_ & kFcrEnable)) return kIirRxData;
    size_t trigger = kRxTrigger[fcr_ >> 6];
    return rx_fifo_.size() >= trigger ? kIirRxData : kIirRxTimeout;
  }
  if ((ier_ & kIerThre) && thr_pending_) return kIirThre;
  if ((ier_ & kIerModemStatus) && msr_delta_) return kIirModemStatus;
  return kIirNone;
}

void Serial16550::update_irq() {
  bool level = pending_interrupt() != kIirNone;
  if (level == irq_level_) return;
  irq_level_ = level;
  irq_.set_level(level);
}

uint8_t Serial16550::read_register(uint64_t offset) {
  switch (offset) {
    case kRbrThrDll: {
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_fifo_.empty()) return 0;
      uint8_t byte = rx_fifo_.front();
      rx_fifo_.pop_front();
      ++rx_bytes_;
      refill_fifo();
      return byte;
    }
    case kIerDlm:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIirFcr: {
      uint8_t id = pending_interrupt();
      // Reading IIR while it reports THRE clears that source (§8.6).
      if (id == kIirThre) thr_pending_ = false;
      return static_cast<uint8_t>(id | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      uint8_t lsr = kLsrThre | kLsrTemt;
      if (!rx_fifo_.empty()) lsr |= kLsrDataReady;
      if (overrun_) lsr |= kLsrOverrun;
      overrun_ = false;  // error bits clear on read
      return lsr;
    }
    case kMsr: {
      uint8_t msr = static_cast<uint8_t>(modem_status_lines() | msr_delta_);
      msr_delta_ = 0;
      return msr;
    }
    case kScr:
      return scr_;
    default:
      return 0xff;  // beyond the 8 registers (the bus keeps us from here)
  }
}

void Serial16550::write_register(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kRbrThrDll:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
      } else {
        thr_pending_ = false;
        transmit(value);
      }
      break;
    case kIerDlm:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
      } else {
        uint8_t old = ier_;
        ier_ = value & kIerMask;
        // Setting ETBEI while THR is empty raises THRE even if an IIR read
        // had cleared it; Linux's 8250 startup (UART_BUG_THRE test) and
        // start_tx depend on it. THR is always empty here.
        if ((old ^ ier_) & kIerThre) thr_pending_ = (ier_ & kIerThre) != 0;
      }
      break;
    case kIirFcr:
      // Bits other than 0 are only programmed when bit 0 is set (§8.4).
      if (value & kFcrEnable) {
        if (!(fcr_ & kFcrEnable) || (value & kFcrClearRx)) rx_fifo_.clear();
        fcr_ = value & 0xc1;
      } else {
        if (fcr_ & kFcrEnable) rx_fifo_.clear();
        fcr_ = 0;
      }
      refill_fifo();
      break;
    case kLcr:
      lcr_ = value;
      break;
    case kMcr:
      write_mcr(value);
      break;
    case kLsr:
      break;  // factory test register; writes are ignored (as QEMU does)
    case kMsr:
      break;  // read-only
    case kScr:
      scr_ = value;
      break;
    default:
      break;
  }
}

}  // namespace skiff
