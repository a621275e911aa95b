// TensorBoard event files (metrics/tensorboard.hpp) and the run log's events.jsonl: r1's writer and
// reader round trip, damaged files are caught, and the committed fixture (an event file r1 wrote,
// read back by the real tensorboard package: scripts/fixtures/make_tensorboard_fixture.py) reads
// the same with r1's reader and re-encodes byte for byte.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "metrics/run_log.hpp"
#include "metrics/tensorboard.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;
namespace tb = r1::metrics::tensorboard;

namespace {

fs::path scratch(const char* name) {
  fs::path d = r1::test::binary_dir() / "tests" / "scratch" / "tensorboard" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<tb::Event> sample_events() {
  return {tb::Event{.wall_time = 1700000000.25, .step = 0, .file_version = tb::kFileVersion},
          tb::scalars_event(bj::object{{"step", 1},
                                       {"time", 1700000001.5},
                                       {"reward/mean", 0.75},
                                       {"kl", 1e-3},
                                       {"guard/kl", "warn"},
                                       {"dropped", true}}),
          tb::config_event(1700000002, "[train]\nsteps = 3\n")};
}

}  // namespace

TEST_CASE("tensorboard: events written are read back: steps, wall times, scalars (as floats) and texts") {
  const fs::path f = scratch("roundtrip") / "events.out.tfevents.test";
  tb::EventWriter w(f);
  w.write(sample_events());
  w.sync();
  auto got = tb::read_events(f);
  CHECK(got.warnings.empty());
  REQUIRE(got.events.size() == 3);
  CHECK(got.events[0].file_version == tb::kFileVersion);
  CHECK(got.events[0].wall_time == 1700000000.25);
  CHECK(got.events[1].step == 1);
  CHECK(got.events[1].wall_time == 1700000001.5);
  REQUIRE(got.events[1].values.size() == 3);  // the string is not a scalar; the boolean is 1
  CHECK(got.events[1].values[0].tag == "reward/mean");
  CHECK(got.events[1].values[0].scalar == 0.75);
  CHECK(got.events[1].values[1].scalar == static_cast<double>(1e-3f));
  CHECK(got.events[1].values[2].scalar == 1.0);
  REQUIRE(got.events[2].values.size() == 1);
  CHECK(got.events[2].values[0].kind == tb::Value::Kind::text);
  CHECK(got.events[2].values[0].text == "```\n[train]\nsteps = 3\n\n```\n");
}

TEST_CASE("tensorboard: a damaged record is an error naming its offset; a torn last record is skipped") {
  const fs::path d = scratch("damaged");
  std::string bytes;
  for (const auto& e : sample_events()) bytes += tb::encode_record(e);
  std::string flipped = bytes;
  flipped[bytes.size() - 10] ^= 0x40;  // inside the last record's data
  r1::write_file_atomic(d / "flipped", flipped);
  CHECK_THROWS_WITH_AS(tb::read_events(d / "flipped"), doctest::Contains("fails its checksum"), r1::Error);
  std::string bad_len = bytes;
  bad_len[0] ^= 1;
  r1::write_file_atomic(d / "bad_len", bad_len);
  CHECK_THROWS_WITH_AS(tb::read_events(d / "bad_len"), doctest::Contains("byte 0: the record length"), r1::Error);
  r1::write_file_atomic(d / "torn", bytes.substr(0, bytes.size() - 5));
  auto torn = tb::read_events(d / "torn");
  CHECK(torn.events.size() == 2);
  REQUIRE(torn.warnings.size() == 1);
  CHECK(torn.warnings[0].find("torn last record") != std::string::npos);
}

TEST_CASE("tensorboard fixture: r1 reads what tensorboard read from r1's file, and re-encodes it byte for byte") {
  const fs::path dir = r1::test::source_dir() / "tests" / "fixtures" / "tensorboard";
  const fs::path file = dir / "events.out.tfevents.fixture";
  REQUIRE(fs::exists(file));
  auto ev = tb::read_events(file);
  CHECK(ev.warnings.empty());
  const bj::object want = bj::parse(r1::read_file(dir / "tensorboard_read.json")).as_object();
  bj::object scalars, texts;
  for (const auto& e : ev.events)
    for (const auto& v : e.values) {
      bj::object& into = v.kind == tb::Value::Kind::scalar ? scalars : texts;
      if (!into.contains(v.tag)) into[v.tag] = bj::array();
      if (v.kind == tb::Value::Kind::scalar)
        into[v.tag].as_array().push_back(bj::array{e.step, v.scalar});
      else
        into[v.tag].as_array().push_back(bj::array{e.step, bj::string(v.text)});
    }
  CHECK(scalars.size() > 30);
  auto same = [](const bj::object& a, const bj::object& b) {  // numbers compared as doubles
    if (a.size() != b.size()) return false;
    for (const auto& kv : a) {
      const bj::value* o = b.if_contains(kv.key());
      if (!o || o->as_array().size() != kv.value().as_array().size()) return false;
      for (size_t i = 0; i < o->as_array().size(); ++i) {
        const auto &x = kv.value().as_array()[i].as_array(), &y = o->as_array()[i].as_array();
        if (x[0].to_number<int64_t>() != y[0].to_number<int64_t>()) return false;
        if (x[1].is_string() ? x[1] != y[1] : x[1].to_number<double>() != y[1].to_number<double>()) return false;
      }
    }
    return true;
  };
  CHECK(same(scalars, want.at("scalars").as_object()));
  CHECK(same(texts, want.at("texts").as_object()));
  std::string again;
  for (const auto& e : ev.events) again += tb::encode_record(e);
  CHECK(again == r1::read_file(file));
}

TEST_CASE("run log: TensorBoard beside metrics.jsonl; events.jsonl keeps every event through truncate_after") {
  const fs::path d = scratch("runlog");
  {
    r1::metrics::RunLog log(d, {.tensorboard = true});
    log.log_config("[train]\n");
    for (int s = 1; s <= 3; ++s) {
      log.log_samples(s, bj::array{bj::object{{"group", 0}, {"sample", 0}, {"reward", 1.0}, {"completion", "42"}}});
      log.log_step({{"step", s}, {"loss", 0.5 * s}});
      log.log_event({{"step", s}, {"event", "guard"}, {"rule", "kl"}});
    }
    log.truncate_after(1);
    log.sync();
  }
  CHECK(r1::read_file(d / "metrics.jsonl").find("\"step\":2") == std::string::npos);
  const std::string events = r1::read_file(d / "events.jsonl");
  CHECK(std::count(events.begin(), events.end(), '\n') == 3);
  auto files = tb::event_files(d);
  REQUIRE(files.size() == 1);
  auto ev = tb::read_events(files[0]);
  REQUIRE(ev.events.size() == 1 + 1 + 3 * 2);  // version, config, then samples and scalars per step
  CHECK(ev.events[1].values[0].tag == "config");
  CHECK(ev.events[2].values[0].tag == "samples");
  CHECK(ev.events[2].values[0].text.find("**group 0, sample 0**: reward 1") == 0);
  CHECK(ev.events[3].values[0].tag == "loss");
  CHECK(ev.events[7].values[0].scalar == 1.5);
}
