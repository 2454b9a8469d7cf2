#include "devices/i8042.h"

#include "base/log.h"

namespace skiff {

namespace {

// Status register bits (port 0x64 read).
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusCommand = 0x08;  // last write went to port 0x64
constexpr uint8_t kStatusUnlocked = 0x10;
constexpr uint8_t kStatusAuxData = 0x20;

// Command byte (controller RAM byte 0) bits.
constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSystemFlag = 0x04;
constexpr uint8_t kCtrKbdDisable = 0x10;
constexpr uint8_t kCtrAuxDisable = 0x20;
constexpr uint8_t kCtrTranslate = 0x40;

// Output port bits (0xD0/0xD1).
constexpr uint8_t kOutPortReset = 0x01;  // active low: 0 holds the CPU in reset
constexpr uint8_t kOutPortA20 = 0x02;

// Controller commands (Linux i8042.h names in comments).
constexpr uint8_t kCmdReadRam = 0x20;   // I8042_CMD_CTL_RCTR for byte 0
constexpr uint8_t kCmdWriteRam = 0x60;  // I8042_CMD_CTL_WCTR for byte 0
constexpr uint8_t kCmdAuxDisable = 0xa7;
constexpr uint8_t kCmdAuxEnable = 0xa8;
constexpr uint8_t kCmdAuxTest = 0xa9;
constexpr uint8_t kCmdSelfTest = 0xaa;  // I8042_CMD_CTL_TEST
constexpr uint8_t kCmdKbdTest = 0xab;
constexpr uint8_t kCmdKbdDisable = 0xad;
constexpr uint8_t kCmdKbdEnable = 0xae;
constexpr uint8_t kCmdReadOutPort = 0xd0;
constexpr uint8_t kCmdWriteOutPort = 0xd1;
constexpr uint8_t kCmdKbdLoop = 0xd2;
constexpr uint8_t kCmdAuxLoop = 0xd3;
constexpr uint8_t kCmdAuxSend = 0xd4;

constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kInterfaceTestPassed = 0x00;

// The controller's output buffer is one byte; a short queue lets a guest
// issue commands without draining in between. Bound it against a guest that
// never reads.
constexpr size_t kMaxOutput = 16;

}  // namespace

I8042::I8042(VmEvents& events) : events_(events) {
  std::lock_guard lock(mu_);
  reset_locked();
}

void I8042::reset() {
  std::lock_guard lock(mu_);
  reset_locked();
}

void I8042::reset_locked() {
  for (auto& b : ram_) b = 0;
  // What a PC BIOS leaves: keyboard interrupt on, POST passed, translation.
  ram_[0] = kCtrKbdInt | kCtrSystemFlag | kCtrTranslate;
  output_port_ = kOutPortReset | kOutPortA20;
  pending_command_ = 0;
  last_write_was_command_ = false;
  output_.clear();
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  uint8_t v = 0xff;
  if (offset == kDataOffset) {
    v = read_data();
  } else if (offset == kCommandOffset) {
    v = read_status();
  }
  // A wider access reads one register; the bytes above it are unclaimed
  // ports (0x61.., 0x65..) and read as all-ones.
  for (auto& b : data) b = 0xff;
  if (!data.empty()) data[0] = v;
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mu_);
  if (offset == kDataOffset) {
    write_data(data[0]);
  } else if (offset == kCommandOffset) {
    write_command(data[0]);
  }
}

uint8_t I8042::read_status() const {
  uint8_t status = kStatusUnlocked;
  if (!output_.empty()) {
    status |= kStatusOutputFull;
    if (output_.front().aux) status |= kStatusAuxData;
  }
  if (ram_[0] & kCtrSystemFlag) status |= kStatusSystemFlag;
  if (last_write_was_command_) status |= kStatusCommand;
  return status;
}

uint8_t I8042::read_data() {
  if (output_.empty()) return 0;
  uint8_t v = output_.front().value;
  output_.pop_front();
  return v;
}

void I8042::push_output(uint8_t value, bool aux) {
  if (output_.size() >= kMaxOutput) output_.pop_front();
  output_.push_back(OutputByte{value, aux});
}

void I8042::write_command(uint8_t cmd) {
  last_write_was_command_ = true;
  pending_command_ = 0;
  if (cmd >= kCmdReadRam && cmd < kCmdReadRam + 0x20) {
    push_output(ram_[cmd - kCmdReadRam]);
    return;
  }
  if (cmd >= kCmdWriteRam && cmd < kCmdWriteRam + 0x20) {
    pending_command_ = cmd;
    return;
  }
  if (cmd >= 0xf0) {
    // Pulse output port lines for 6 us; bits 0-3 are active low and bit 0
    // is the CPU reset line. 0xFE is the classic "reboot via keyboard".
    if (!(cmd & 0x01)) {
      LOG_INFO("i8042: guest pulsed the reset line (command {:#04x})", cmd);
      events_.request_reset();
    }
    return;
  }
  switch (cmd) {
    case kCmdAuxDisable:
      ram_[0] |= kCtrAuxDisable;
      break;
    case kCmdAuxEnable:
      ram_[0] &= static_cast<uint8_t>(~kCtrAuxDisable);
      break;
    case kCmdAuxTest:
    case kCmdKbdTest:
      push_output(kInterfaceTestPassed);
      break;
    case kCmdSelfTest:
      ram_[0] |= kCtrSystemFlag;
      push_output(kSelfTestPassed);
      break;
    case kCmdKbdDisable:
      ram_[0] |= kCtrKbdDisable;
      break;
    case kCmdKbdEnable:
      ram_[0] &= static_cast<uint8_t>(~kCtrKbdDisable);
      break;
    case kCmdReadOutPort:
      push_output(output_port_);
      break;
    case kCmdWriteOutPort:
    case kCmdKbdLoop:
    case kCmdAuxLoop:
    case kCmdAuxSend:
      pending_command_ = cmd;
      break;
    default:
      LOG_DEBUG("i8042: ignoring controller command {:#04x}", cmd);
      break;
  }
}

void I8042::write_data(uint8_t value) {
  last_write_was_command_ = false;
  uint8_t cmd = pending_command_;
  pending_command_ = 0;
  if (cmd >= kCmdWriteRam && cmd < kCmdWriteRam + 0x20) {
    ram_[cmd - kCmdWriteRam] = value;
    return;
  }
  switch (cmd) {
    case kCmdWriteOutPort:
      output_port_ = value | kOutPortA20;  // A20 cannot be turned off here
      if (!(value & kOutPortReset)) {
        LOG_INFO("i8042: guest cleared the reset bit of the output port");
        events_.request_reset();
        output_port_ |= kOutPortReset;  // the reset is a pulse, not a state
      }
      break;
    case kCmdKbdLoop:
      push_output(value, /*aux=*/false);
      break;
    case kCmdAuxLoop:
      push_output(value, /*aux=*/true);
      break;
    case kCmdAuxSend:
      break;  // no mouse attached
    default:
      break;  // a byte for the keyboard; none is attached
  }
}

}  // namespace skiff
