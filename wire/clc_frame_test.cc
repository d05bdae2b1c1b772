// ClcFrameDecoder over a TCP byte stream: fed one byte at a time and in
// random chunks, with application bytes after the CLC message(s). The
// decoder must stop exactly at each message end: the bytes after a CLC
// message belong to the application after a fallback.
#include <gtest/gtest.h>

#include <random>
#include <string_view>

#include "wire/clc.h"
#include "wire/clc_testing.h"

namespace usmc::wire {
namespace {

using Status = ClcFrameDecoder::Status;

Bytes AppBytes() {
  std::string_view s = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  Bytes b;
  for (char c : s) b.push_back(std::byte(c));
  // Bytes that look like a CLC header must not be read either.
  Bytes clc = EncodeToBytes(ClcSamples().front().second);
  b.insert(b.end(), clc.begin(), clc.begin() + 8);
  return b;
}

// Feeds `stream` in chunks chosen by `next_chunk` and collects frames; stops
// feeding after `max_frames` frames and returns the unconsumed rest.
template <typename ChunkFn>
Bytes FeedStream(const Bytes& stream, size_t max_frames, ChunkFn next_chunk,
                 std::vector<Bytes>* frames,
                 std::vector<ClcMessage>* messages) {
  ClcFrameDecoder dec;
  size_t pos = 0;
  while (frames->size() < max_frames && pos < stream.size()) {
    size_t n = std::min(next_chunk(), stream.size() - pos);
    std::span<const std::byte> chunk(stream.data() + pos, n);
    // The decoder may be handed the same bytes again if it does not
    // consume them all; feed until the chunk is used up or a frame ends.
    ClcFrameDecoder::Result r = dec.Feed(chunk);
    EXPECT_NE(r.status, Status::kError) << dec.error();
    if (r.status == Status::kError) break;
    EXPECT_LE(r.consumed, n);
    pos += r.consumed;
    if (r.status == Status::kNeedMore) {
      EXPECT_EQ(r.consumed, n);  // NeedMore means everything was taken
    } else {
      frames->push_back(Bytes(dec.frame().begin(), dec.frame().end()));
      messages->push_back(dec.message());
    }
  }
  return Bytes(stream.begin() + pos, stream.end());
}

class ClcFrameSampleTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ClcFrameSampleTest, OneByteAtATimeLeavesAppBytes) {
  ClcMessage msg;
  for (auto& [n, m] : ClcSamples()) {
    if (n == GetParam()) msg = m;
  }
  Bytes wire = EncodeToBytes(msg);
  Bytes stream = wire;
  Bytes app = AppBytes();
  stream.insert(stream.end(), app.begin(), app.end());

  std::vector<Bytes> frames;
  std::vector<ClcMessage> messages;
  Bytes rest = FeedStream(
      stream, 1, [] { return size_t{1}; }, &frames, &messages);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], wire);
  EXPECT_EQ(messages[0], msg);
  EXPECT_EQ(rest, app);
}

TEST_P(ClcFrameSampleTest, WholeStreamInOneChunk) {
  ClcMessage msg;
  for (auto& [n, m] : ClcSamples()) {
    if (n == GetParam()) msg = m;
  }
  Bytes wire = EncodeToBytes(msg);
  Bytes stream = wire;
  Bytes app = AppBytes();
  stream.insert(stream.end(), app.begin(), app.end());
  ClcFrameDecoder dec;
  ClcFrameDecoder::Result r = dec.Feed(stream);
  ASSERT_EQ(r.status, Status::kFrame);
  EXPECT_EQ(r.consumed, wire.size());
  EXPECT_EQ(Bytes(dec.frame().begin(), dec.frame().end()), wire);
}

INSTANTIATE_TEST_SUITE_P(Samples, ClcFrameSampleTest, ::testing::ValuesIn([] {
                           std::vector<std::string> v;
                           for (auto& [n, m] : ClcSamples()) v.push_back(n);
                           return v;
                         }()),
                         [](const auto& info) { return info.param; });

TEST(ClcFrameTest, RandomChunksOverManyMessages) {
  std::mt19937 rng(0xC1C);
  auto samples = ClcSamples();
  for (int round = 0; round < 200; ++round) {
    // A handshake-like sequence of 1..4 messages, then application bytes.
    std::vector<ClcMessage> sent;
    Bytes stream;
    size_t count = 1 + rng() % 4;
    for (size_t i = 0; i < count; ++i) {
      const ClcMessage& m = samples[rng() % samples.size()].second;
      sent.push_back(m);
      Bytes w = EncodeToBytes(m);
      stream.insert(stream.end(), w.begin(), w.end());
    }
    Bytes app = AppBytes();
    stream.insert(stream.end(), app.begin(), app.end());

    std::vector<Bytes> frames;
    std::vector<ClcMessage> got;
    Bytes rest = FeedStream(
        stream, count, [&] { return size_t{1 + rng() % 97}; }, &frames, &got);
    ASSERT_EQ(got.size(), count) << "round " << round;
    for (size_t i = 0; i < count; ++i) EXPECT_EQ(got[i], sent[i]);
    EXPECT_EQ(rest, app) << "round " << round;
  }
}

TEST(ClcFrameTest, NeedMoreReportsBufferedBytes) {
  Bytes wire = EncodeToBytes(ClcSamples()[0].second);  // decline_v1
  ClcFrameDecoder dec;
  ClcFrameDecoder::Result r =
      dec.Feed(std::span<const std::byte>(wire).first(5));
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(r.consumed, 5u);
  EXPECT_EQ(dec.buffered(), 5u);
  r = dec.Feed(std::span<const std::byte>(wire).subspan(5, 10));
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(dec.buffered(), 15u);
  r = dec.Feed(std::span<const std::byte>(wire).subspan(15));
  EXPECT_EQ(r.status, Status::kFrame);
  EXPECT_EQ(r.consumed, wire.size() - 15);
  EXPECT_EQ(dec.buffered(), 0u);
  // An empty feed after a frame starts the next message and needs more.
  r = dec.Feed({});
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(ClcFrameTest, NonClcStreamFailsAtTheHeader) {
  Bytes app = AppBytes();
  ClcFrameDecoder dec;
  size_t consumed = 0;
  ClcFrameDecoder::Result r;
  for (size_t i = 0; i < app.size(); ++i) {
    r = dec.Feed(std::span<const std::byte>(app).subspan(i, 1));
    consumed += r.consumed;
    if (r.status != Status::kNeedMore) break;
  }
  EXPECT_EQ(r.status, Status::kError);
  EXPECT_EQ(consumed, kClcHeaderLen);
  EXPECT_EQ(dec.error(),
            (WireError{WireErrc::kBadEyecatcher, "clc.eyecatcher"}));
  // The error is sticky and consumes nothing more.
  r = dec.Feed(app);
  EXPECT_EQ(r.status, Status::kError);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(ClcFrameTest, StatedLengthAboveTheMaximumIsRejectedEarly) {
  Bytes b = ByteBuilder()
                .Eye("SMCR")
                .U8(1)
                .U16(kClcMaxMessageLen + 1)
                .U8(0x20)
                .Zeros(100)
                .Take();
  ClcFrameDecoder dec;
  ClcFrameDecoder::Result r = dec.Feed(b);
  EXPECT_EQ(r.status, Status::kError);
  EXPECT_EQ(r.consumed, kClcHeaderLen);
  EXPECT_EQ(dec.error(), (WireError{WireErrc::kBadLength, "clc.length"}));

  Bytes max = ByteBuilder()
                  .Eye("SMCR")
                  .U8(1)
                  .U16(kClcMaxMessageLen)
                  .U8(0x20)
                  .Zeros(100)
                  .Take();
  ClcFrameDecoder dec2;
  r = dec2.Feed(max);
  EXPECT_EQ(r.status, Status::kNeedMore);  // the maximum itself is allowed
  EXPECT_EQ(r.consumed, max.size());
}

TEST(ClcFrameTest, InvalidBodyIsAnError) {
  Bytes wire = EncodeToBytes(ClcSamples()[0].second);  // decline_v1
  wire[wire.size() - 1] = std::byte{0};                // broken trailer
  ClcFrameDecoder dec;
  ClcFrameDecoder::Result r = dec.Feed(wire);
  EXPECT_EQ(r.status, Status::kError);
  EXPECT_EQ(r.consumed, wire.size());
  EXPECT_EQ(dec.error(), (WireError{WireErrc::kBadTrailer, "clc.trailer"}));
}

TEST(ClcFrameTest, FramingOnlyModeSkipsBodyChecks) {
  Bytes wire;
  for (auto& [n, m] : ClcSamples()) {
    if (n == "proposal_v2_full") wire = EncodeToBytes(m);
  }
  wire[50] = std::byte{0x7f};  // wrong v2_ext_offset: body invalid
  ClcFrameDecoder framing_only(/*decode_body=*/false);
  EXPECT_EQ(framing_only.Feed(wire).status, Status::kFrame);
  ClcFrameDecoder full;
  EXPECT_EQ(full.Feed(wire).status, Status::kError);
  EXPECT_EQ(full.error().code, WireErrc::kBadOffset);

  wire[wire.size() - 2] = std::byte{0};  // and a broken trailer
  ClcFrameDecoder framing_only2(false);
  EXPECT_EQ(framing_only2.Feed(wire).status, Status::kError);
  EXPECT_EQ(framing_only2.error(),
            (WireError{WireErrc::kBadTrailer, "clc.trailer"}));
}

}  // namespace
}  // namespace usmc::wire
