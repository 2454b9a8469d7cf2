#include "devices/serial_16550.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "devices/fakes.h"

namespace skiff {
namespace {

using testing::FakeIrqLine;

// Register offsets, spelled out here rather than shared with the device so a
// wrong constant in the device cannot make the tests agree with it.
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                   kScr = 7;

class Serial16550Test : public ::testing::Test {
 protected:
  Serial16550Test()
      : uart_(irq_, [this](std::span<const uint8_t> b) { output_.append(b.begin(), b.end()); }) {}

  uint8_t in(uint64_t off) {
    uint8_t v = 0;
    uart_.read(off, std::span(&v, 1));
    return v;
  }
  void out(uint64_t off, uint8_t v) { uart_.write(off, std::span<const uint8_t>(&v, 1)); }
  void input(const std::string& s) {
    uart_.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  FakeIrqLine irq_;
  std::string output_;
  Serial16550 uart_;
};

TEST_F(Serial16550Test, PowerOnStateHasNoInterruptAndEmptyTransmitter) {
  EXPECT_EQ(in(kIir), 0x01);
  EXPECT_EQ(in(kLsr), 0x60);  // THRE | TEMT
  EXPECT_EQ(in(kIer), 0x00);
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(in(kData), 0x00);  // empty receiver reads 0, not garbage
}

TEST_F(Serial16550Test, BytesWrittenToThrReachTheOutputSink) {
  for (char c : std::string("hi\n")) out(kData, static_cast<uint8_t>(c));
  EXPECT_EQ(output_, "hi\n");
}

TEST_F(Serial16550Test, ThreInterruptRaisedWhenEnabledAndClearedOnIirRead) {
  out(kIer, 0x02);
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(in(kIir), 0x02);
  // The read that reported THRE cleared it.
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(in(kIir), 0x01);
}

TEST_F(Serial16550Test, ReenablingThreInterruptRaisesItAgain) {
  // Linux's serial8250_do_startup: IER=THRI, read IIR, IER=0, IER=THRI, read
  // IIR; a UART that does not re-assert gets UART_BUG_THRE.
  out(kIer, 0x02);
  EXPECT_EQ(in(kIir), 0x02);
  out(kIer, 0x00);
  EXPECT_EQ(in(kIir), 0x01);
  out(kIer, 0x02);
  EXPECT_EQ(in(kIir), 0x02);
}

TEST_F(Serial16550Test, WritingThrReassertsThreAfterTransmit) {
  out(kIer, 0x02);
  (void)in(kIir);
  ASSERT_FALSE(irq_.level);
  out(kData, 'x');
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(in(kIir), 0x02);
}

TEST_F(Serial16550Test, DisablingThreInterruptLowersTheLine) {
  out(kIer, 0x02);
  ASSERT_TRUE(irq_.level);
  out(kIer, 0x00);
  EXPECT_FALSE(irq_.level);
}

TEST_F(Serial16550Test, RxInterruptOnInputClearedWhenDrained) {
  out(kIer, 0x01);
  EXPECT_FALSE(irq_.level);
  input("ab");
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(in(kIir), 0x04);
  EXPECT_EQ(in(kData), 'a');
  EXPECT_TRUE(irq_.level);  // 'b' moved into the holding register
  EXPECT_EQ(in(kData), 'b');
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(in(kIir), 0x01);
}

TEST_F(Serial16550Test, RxBelowTriggerLevelReportsTimeoutAboveReportsDataAvailable) {
  out(kFcr, 0xc1);  // FIFO on, trigger 14
  out(kIer, 0x01);
  input("abc");
  EXPECT_EQ(in(kIir), 0xcc);
  input("defghijklmn");  // 14 bytes now
  EXPECT_EQ(in(kIir), 0xc4);
}

TEST_F(Serial16550Test, RxDataHasPriorityOverThre) {
  out(kIer, 0x03);
  input("z");
  EXPECT_EQ(in(kIir), 0x04);
  EXPECT_EQ(in(kIir), 0x04);  // reading IIR does not clear RX data
  (void)in(kData);
  EXPECT_EQ(in(kIir), 0x02);
}

TEST_F(Serial16550Test, IirShowsFifoBitsOnlyWhileFifosEnabled) {
  out(kFcr, 0x01);
  EXPECT_EQ(in(kIir)&0xc0, 0xc0);
  out(kFcr, 0x00);
  EXPECT_EQ(in(kIir)&0xc0, 0x00);
}

TEST_F(Serial16550Test, NoBit5In64ByteFifoProbeSoLinuxSees16550A) {
  // Linux autoconfig writes FCR with the 16750 64-byte bit and checks IIR.
  out(kFcr, 0xe7);
  EXPECT_EQ(in(kIir)&0xe0, 0xc0);
}

TEST_F(Serial16550Test, FifoKeepsOrderAcrossMoreInputThanItsDepth) {
  out(kFcr, 0x07);
  std::string sent;
  for (int i = 0; i < 300; ++i) sent.push_back(static_cast<char>('A' + i % 26));
  input(sent);
  std::string got;
  while (in(kLsr)&0x01) got.push_back(static_cast<char>(in(kData)));
  EXPECT_EQ(got, sent);
  EXPECT_EQ(uart_.dropped_input_bytes(), 0u);
}

TEST_F(Serial16550Test, InputBeyondHostBufferIsDroppedAndCounted) {
  out(kFcr, 0x01);
  std::string big(Serial16550::kMaxPendingInput + Serial16550::kFifoSize + 10, 'q');
  input(big);
  EXPECT_EQ(uart_.dropped_input_bytes(), 10u);
  size_t n = 0;
  while (in(kLsr)&0x01) {
    (void)in(kData);
    ++n;
  }
  EXPECT_EQ(n, Serial16550::kMaxPendingInput + Serial16550::kFifoSize);
}

TEST_F(Serial16550Test, FcrClearRxDiscardsFifoContents) {
  out(kFcr, 0x01);
  input("hello");
  ASSERT_TRUE(in(kLsr)&0x01);
  out(kFcr, 0x03);
  EXPECT_FALSE(in(kLsr)&0x01);
}

TEST_F(Serial16550Test, FcrBitsIgnoredWithoutEnableBit) {
  out(kFcr, 0x01);
  input("x");
  out(kFcr, 0x00 | 0x02);  // disables FIFO (which clears it)...
  EXPECT_FALSE(in(kLsr)&0x01);
  input("y");
  out(kFcr, 0xc2);  // ...and a clear without bit 0 programs nothing
  EXPECT_EQ(in(kIir)&0xc0, 0x00);
  EXPECT_EQ(in(kData), 'y');
}

TEST_F(Serial16550Test, DlabSwitchesDataAndIerToDivisorLatch) {
  out(kLcr, 0x83);
  out(kData, 0x01);              // DLL
  out(kIer, 0x02);               // DLM
  EXPECT_TRUE(output_.empty());  // a DLL write is not a transmit
  EXPECT_FALSE(irq_.level);      // and DLM is not IER
  EXPECT_EQ(in(kData), 0x01);
  EXPECT_EQ(in(kIer), 0x02);
  out(kLcr, 0x03);
  EXPECT_EQ(in(kIer), 0x00);
  out(kIer, 0x05);
  EXPECT_EQ(in(kIer), 0x05);
  out(kLcr, 0x83);
  EXPECT_EQ(in(kData), 0x01);
  EXPECT_EQ(in(kIer), 0x02);
  EXPECT_EQ(in(kLcr), 0x83);
}

TEST_F(Serial16550Test, IerUpperBitsReadAsZero) {
  out(kIer, 0xff);
  EXPECT_EQ(in(kIer), 0x0f);
}

TEST_F(Serial16550Test, LoopbackRoutesModemLinesAsLinuxAutoconfigExpects) {
  // serial8250 autoconfig: MCR = LOOP | OUT2 | RTS, expects MSR & 0xF0 == 0x90.
  out(kMcr, 0x1a);
  EXPECT_EQ(in(kMsr)&0xf0, 0x90);
  out(kMcr, 0x1f);
  EXPECT_EQ(in(kMsr)&0xf0, 0xf0);
  out(kMcr, 0x00);
  EXPECT_EQ(in(kMsr)&0xf0, 0xb0);  // DCD, DSR, CTS outside loopback
}

TEST_F(Serial16550Test, LoopbackEchoesTransmittedBytesInsteadOfOutput) {
  out(kMcr, 0x10);
  out(kData, 'L');
  EXPECT_TRUE(output_.empty());
  EXPECT_EQ(in(kLsr)&0x01, 0x01);
  EXPECT_EQ(in(kData), 'L');
  out(kMcr, 0x00);
  out(kData, 'M');
  EXPECT_EQ(output_, "M");
}

TEST_F(Serial16550Test, LoopbackOverrunSetsOeAndLineStatusInterrupt) {
  out(kIer, 0x04);
  out(kMcr, 0x10);
  out(kData, '1');  // fills the 1-byte holding register (FIFOs off)
  out(kData, '2');  // overruns
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(in(kIir), 0x06);
  EXPECT_EQ(in(kLsr), 0x63);  // THRE | TEMT | OE | DR
  EXPECT_EQ(in(kLsr), 0x61);  // OE cleared by the read
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(in(kData), '1');
}

TEST_F(Serial16550Test, ModemStatusInterruptOnLineChangeClearedByMsrRead) {
  out(kIer, 0x08);
  out(kMcr, 0x10);  // loopback: all lines drop -> delta bits
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(in(kIir), 0x00);
  EXPECT_EQ(in(kMsr)&0x0f, 0x0b);  // DCTS | DDSR | DDCD
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(in(kMsr)&0x0f, 0x00);
}

TEST_F(Serial16550Test, LsrReportsDataReadyOnlyWhileDataWaits) {
  EXPECT_EQ(in(kLsr), 0x60);
  input("k");
  EXPECT_EQ(in(kLsr), 0x61);
  (void)in(kData);
  EXPECT_EQ(in(kLsr), 0x60);
}

TEST_F(Serial16550Test, ScratchRegisterHoldsAValue) {
  out(kScr, 0xa5);
  EXPECT_EQ(in(kScr), 0xa5);
}

TEST_F(Serial16550Test, IrqLineOnlyCalledOnLevelChanges) {
  out(kIer, 0x02);
  out(kData, 'a');
  out(kData, 'b');
  (void)in(kLsr);
  ASSERT_EQ(irq_.history.size(), 1u);
  EXPECT_TRUE(irq_.history[0]);
}

TEST_F(Serial16550Test, ResetRestoresPowerOnRegistersAndKeepsPendingInput) {
  out(kIer, 0x0f);
  out(kLcr, 0x83);
  out(kMcr, 0x1f);
  out(kScr, 0x11);
  input("rs");  // 'r' sits in the receiver, 's' waits on the host side
  uart_.reset();
  EXPECT_EQ(in(kLcr), 0x00);
  EXPECT_EQ(in(kIer), 0x00);
  EXPECT_EQ(in(kMcr), 0x00);
  EXPECT_EQ(in(kScr), 0x00);
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(in(kData), 's');  // the receiver was cleared, host input kept
}

TEST_F(Serial16550Test, WideAccessesTouchConsecutiveRegisters) {
  uint8_t w[2] = {0x83, 0x0b};  // LCR, MCR
  uart_.write(kLcr, w);
  EXPECT_EQ(in(kLcr), 0x83);
  EXPECT_EQ(in(kMcr), 0x0b);
  uint8_t r[2] = {};
  uart_.read(kLsr, r);  // LSR, MSR
  EXPECT_EQ(r[0], 0x60);
  EXPECT_EQ(r[1] & 0xf0, 0xb0);
}

TEST_F(Serial16550Test, HostileOffsetsAreHarmless) {
  // The bus never sends these, but a device must not trust its caller.
  uint8_t big[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uart_.write(6, big);
  uart_.read(100, big);
  EXPECT_EQ(big[0], 0xff);
  uart_.write(UINT64_MAX, std::span<const uint8_t>(big, 1));
}

TEST_F(Serial16550Test, InputFromAnotherThreadArrivesInOrder) {
  out(kFcr, 0x01);
  constexpr int kChunks = 200;
  std::thread feeder([this] {
    for (int i = 0; i < kChunks; ++i) {
      uint8_t b = static_cast<uint8_t>(i);
      uart_.enqueue_input(std::span(&b, 1));
    }
  });
  std::vector<uint8_t> got;
  while (got.size() < kChunks) {
    if (in(kLsr)&0x01) got.push_back(in(kData));
  }
  feeder.join();
  for (int i = 0; i < kChunks; ++i) ASSERT_EQ(got[i], static_cast<uint8_t>(i));
}

}  // namespace
}  // namespace skiff

namespace skiff {
namespace {

// vm.counters: transmitted bytes exclude loopback, received bytes are RBR
// reads, and reset() keeps the totals.
TEST_F(Serial16550Test, CountersTrackTransmittedAndReceivedBytes) {
  for (char c : std::string("abc")) out(kData, static_cast<uint8_t>(c));
  input("xy");
  EXPECT_EQ(in(kData), 'x');
  auto c = uart_.counters();
  EXPECT_EQ(c.tx_bytes, 3u);
  EXPECT_EQ(c.rx_bytes, 1u);
  out(kMcr, 0x10);  // loopback: not host output
  out(kData, 'z');
  EXPECT_EQ(uart_.counters().tx_bytes, 3u);
  uart_.reset();
  EXPECT_EQ(uart_.counters().tx_bytes, 3u);
  EXPECT_EQ(uart_.counters().rx_bytes, 1u);
}

}  // namespace
}  // namespace skiff
