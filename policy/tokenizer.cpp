// Byte-level BPE as Hugging Face tokenizers runs it, step for step:
//   1. added tokens that are not normalized are cut out of the raw text (leftmost-longest),
//   2. every other piece is normalized, and normalized added tokens are cut out of it,
//   3. the remaining pieces are pre-tokenized (Split / Digits / ByteLevel, in sequence),
//   4. every pre-token is merged by BPE rank over its bytes (cached per pre-token).
#include "policy/tokenizer.hpp"

#include "common/utf8.hpp"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "policy/tokenizer_pretok.hpp"
#include "policy/tokenizer_unicode.hpp"

namespace r1 {
namespace {

namespace bj = boost::json;
using tok::Span;

// Lets string-keyed maps be searched with a string_view, without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// ---- JSON access with errors that name the file and the field ----------------------------------

struct Json {
  std::string file;

  [[noreturn]] void bad(std::string_view field, std::string_view what) const {
    fail("{}: field '{}': {}", file, field, what);
  }
  const bj::value* find(const bj::object& o, std::string_view key) const {
    auto it = o.find(key);
    return it == o.end() || it->value().is_null() ? nullptr : &it->value();
  }
  const bj::object& object(const bj::value& v, std::string_view field) const {
    if (!v.is_object()) bad(field, fmt::format("expected an object, got {}", json::kind_name(v)));
    return v.get_object();
  }
  const bj::array& array(const bj::value& v, std::string_view field) const {
    if (!v.is_array()) bad(field, fmt::format("expected an array, got {}", json::kind_name(v)));
    return v.get_array();
  }
  std::string string(const bj::value& v, std::string_view field) const {
    if (!v.is_string()) bad(field, fmt::format("expected a string, got {}", json::kind_name(v)));
    return std::string(v.get_string());
  }
  int64_t integer(const bj::value& v, std::string_view field) const {
    if (v.is_int64()) return v.get_int64();
    if (v.is_uint64() && v.get_uint64() <= INT64_MAX) return static_cast<int64_t>(v.get_uint64());
    bad(field, fmt::format("expected an integer, got {}", json::kind_name(v)));
  }
  bool boolean_or(const bj::object& o, std::string_view key, std::string_view field, bool def) const {
    const bj::value* v = find(o, key);
    if (!v) return def;
    if (!v->is_bool()) bad(field, fmt::format("expected true or false, got {}", json::kind_name(*v)));
    return v->get_bool();
  }
  const bj::value& at(const bj::object& o, std::string_view key, std::string_view parent) const {
    const bj::value* v = find(o, key);
    if (!v) bad(join(parent, key), "required but missing");
    return *v;
  }
  std::string type_of(const bj::object& o, std::string_view parent) const {
    return string(at(o, "type", parent), join(parent, "type"));
  }
  static std::string join(std::string_view parent, std::string_view key) {
    return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
  }
  static std::string index(std::string_view parent, size_t i) { return fmt::format("{}[{}]", parent, i); }
};

// ---- Byte-level alphabet (GPT-2's bytes_to_unicode) ---------------------------------------------

struct ByteAlphabet {
  std::array<uint32_t, 256> byte_to_cp{};
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteAlphabet() {
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? b : 256 + extra++;
      cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
  std::string encode(std::string_view bytes) const {
    std::string out;
    for (unsigned char b : bytes) tok::append_utf8(out, byte_to_cp[b]);
    return out;
  }
  // The bytes a token stands for: its characters mapped back, or its own UTF-8 when any character
  // is outside the alphabet (what tokenizers' ByteLevel decoder does).
  std::string decode(std::string_view token) const {
    std::string out;
    for (size_t i = 0; i < token.size();) {
      auto it = cp_to_byte.find(tok::next_cp(token, i));
      if (it == cp_to_byte.end()) return std::string(token);
      out += static_cast<char>(it->second);
    }
    return out;
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

// ---- Merge ranks: (left id, right id) -> (rank, merged id), open addressing --------------------

class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    TokenId id = -1;
  };
  static constexpr uint64_t kEmpty = ~0ull;

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    table_.assign(cap, Entry{});
    mask_ = cap - 1;
  }
  // A repeated pair keeps the later rank, as tokenizers' HashMap collect does.
  void insert(TokenId a, TokenId b, uint32_t rank, TokenId id) {
    uint64_t k = key(a, b);
    for (size_t h = hash(k);; h = (h + 1) & mask_) {
      Entry& e = table_[h];
      if (e.key == kEmpty || e.key == k) {
        e = {k, rank, id};
        return;
      }
    }
  }
  const Entry* find(TokenId a, TokenId b) const {
    uint64_t k = key(a, b);
    for (size_t h = hash(k);; h = (h + 1) & mask_) {
      const Entry& e = table_[h];
      if (e.key == k) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  static uint64_t key(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t hash(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<Entry> table_;
  size_t mask_ = 0;
};

// ---- Added tokens: a byte trie searched leftmost-longest (tokenizers uses Aho-Corasick) -----------

struct AddedToken {
  std::string content;
  TokenId id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

class TokenTrie {
 public:
  void add(std::string_view s, uint32_t token_index) {
    if (s.empty()) return;
    if (nodes_.empty()) nodes_.emplace_back();
    first_[static_cast<unsigned char>(s[0])] = true;
    uint32_t n = 0;
    for (unsigned char c : s) {
      auto& kids = nodes_[n].kids;
      auto it = std::find_if(kids.begin(), kids.end(), [c](const auto& k) { return k.first == c; });
      if (it == kids.end()) {
        uint32_t child = static_cast<uint32_t>(nodes_.size());
        nodes_[n].kids.emplace_back(c, child);
        nodes_.emplace_back();
        n = child;
      } else {
        n = it->second;
      }
    }
    if (nodes_[n].token < 0) nodes_[n].token = static_cast<int32_t>(token_index);
  }
  bool can_start(unsigned char c) const { return first_[c]; }
  // Length of the longest token starting at text[i] (0 if none) and its index.
  size_t longest_at(std::string_view text, size_t i, uint32_t& token_index) const {
    size_t best = 0;
    uint32_t n = 0;
    for (size_t k = i; k < text.size(); ++k) {
      unsigned char c = static_cast<unsigned char>(text[k]);
      const auto& kids = nodes_[n].kids;
      auto it = std::find_if(kids.begin(), kids.end(), [c](const auto& kid) { return kid.first == c; });
      if (it == kids.end()) break;
      n = it->second;
      if (nodes_[n].token >= 0) {
        best = k + 1 - i;
        token_index = static_cast<uint32_t>(nodes_[n].token);
      }
    }
    return best;
  }
  bool empty() const { return nodes_.empty(); }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, uint32_t>> kids;
    int32_t token = -1;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_{};
};

bool ends_with_white(std::string_view s, size_t& start) {  // moves start back over trailing \s
  size_t i = start;
  while (i > 0) {
    size_t j = i;
    if (!(tok::cp_flags(tok::prev_cp(s, j)) & tok::kWhite)) break;
    i = j;
  }
  bool moved = i != start;
  start = i;
  return moved;
}

}  // namespace

// ---- The tokenizer --------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string file;

  // Model (BPE).
  StringMap<TokenId> vocab;  // byte-level strings
  MergeTable merges;
  std::array<TokenId, 256> byte_id{};  // -1: the byte's character is not in the vocabulary
  std::optional<TokenId> unk;
  bool fuse_unk = false;
  bool ignore_merges = false;

  // Normalizer chain and pre-tokenizer steps.
  std::vector<tok::NormForm> norms;
  std::vector<tok::SplitStep> steps;
  bool prefix_space = false;                 // ByteLevel add_prefix_space
  std::optional<tok::SplitStep> gpt2_split;  // ByteLevel use_regex

  // Added tokens.
  std::vector<AddedToken> added;
  StringMap<TokenId> added_by_content;
  TokenTrie raw_trie, norm_trie;

  // Per id: the token string, its decoded bytes, and whether it is special.
  std::vector<std::string> tokens;
  std::vector<std::string> bytes;
  std::vector<uint8_t> special;
  std::vector<uint8_t> present;

  std::optional<TokenId> bos, eos, pad;

  // Pre-token cache: raw bytes -> (offset, count) into cache_ids.
  static constexpr size_t kCacheMaxEntries = 1 << 18;
  static constexpr size_t kCacheMaxPiece = 256;
  mutable std::shared_mutex cache_mu;
  mutable StringMap<std::pair<uint32_t, uint32_t>> cache;
  mutable std::vector<TokenId> cache_ids;

  void encode_into(std::string_view text, SpecialTokens mode, std::vector<TokenId>& out) const;
  void encode_normalized(std::string_view piece, SpecialTokens mode, std::vector<TokenId>& out) const;
  void encode_pretokens(std::string_view text, std::vector<TokenId>& out) const;
  void bpe(std::string_view piece, std::vector<TokenId>& out) const;
  void merge_word(std::string_view piece, std::vector<TokenId>& out) const;

  // Cuts the added tokens of `trie` out of `text`: calls gap(Span) for text between tokens and
  // token(id) for each token, in order (tokenizers' AddedVocabulary::find_matches).
  template <class Gap, class Tok>
  void split_added(std::string_view text, const TokenTrie& trie, SpecialTokens mode, Gap&& gap, Tok&& token) const;
};

template <class Gap, class Tok>
void Tokenizer::Impl::split_added(std::string_view text, const TokenTrie& trie, SpecialTokens mode, Gap&& gap,
                                  Tok&& token) const {
  if (trie.empty()) {
    if (!text.empty()) gap(Span{0, static_cast<uint32_t>(text.size())});
    return;
  }
  size_t start_offset = 0;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (!trie.can_start(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    uint32_t index = 0;
    size_t len = trie.longest_at(text, i, index);
    if (len == 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + len;
    i = stop;  // the search resumes after the match, whatever becomes of it
    const AddedToken& t = added[index];
    if (mode == SpecialTokens::kAsText && t.special) continue;
    if (t.single_word) {
      size_t b = start, e = stop;
      bool word_before = b > 0 && (tok::cp_flags(tok::prev_cp(text, b)) & tok::kWord);
      bool word_after = e < n && (tok::cp_flags(tok::next_cp(text, e)) & tok::kWord);
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      ends_with_white(text.substr(0, start), s);
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      while (stop < n) {
        size_t e = stop;
        if (!(tok::cp_flags(tok::next_cp(text, e)) & tok::kWhite)) break;
        stop = e;
      }
    }
    start = std::max(start, start_offset);
    if (start_offset < start) gap(Span{static_cast<uint32_t>(start_offset), static_cast<uint32_t>(start)});
    token(t.id);
    start_offset = std::max(start_offset, stop);
  }
  if (start_offset < n) gap(Span{static_cast<uint32_t>(start_offset), static_cast<uint32_t>(n)});
}

void Tokenizer::Impl::encode_into(std::string_view text, SpecialTokens mode, std::vector<TokenId>& out) const {
  split_added(
      text, raw_trie, mode, [&](Span g) { encode_normalized(text.substr(g.begin, g.end - g.begin), mode, out); },
      [&](TokenId id) { out.push_back(id); });
}

void Tokenizer::Impl::encode_normalized(std::string_view piece, SpecialTokens mode, std::vector<TokenId>& out) const {
  std::string normalized;
  std::string_view text = piece;
  for (tok::NormForm f : norms) {
    std::string next;
    if (tok::normalize(f, text, next)) {
      normalized = std::move(next);
      text = normalized;
    }
  }
  split_added(
      text, norm_trie, mode, [&](Span g) { encode_pretokens(text.substr(g.begin, g.end - g.begin), out); },
      [&](TokenId id) { out.push_back(id); });
}

void Tokenizer::Impl::encode_pretokens(std::string_view text, std::vector<TokenId>& out) const {
  thread_local std::vector<Span> a, b;
  a.clear();
  a.push_back({0, static_cast<uint32_t>(text.size())});
  for (const auto& step : steps) {
    b.clear();
    tok::apply_split(step, text, a, b);
    std::swap(a, b);
  }
  if (!prefix_space && !gpt2_split) {
    for (const Span& s : a) bpe(text.substr(s.begin, s.end - s.begin), out);
    return;
  }
  // ByteLevel with add_prefix_space and/or use_regex: rebuild the text with the prefixes.
  std::string rebuilt;
  std::vector<Span> pieces;
  for (const Span& s : a) {
    uint32_t begin = static_cast<uint32_t>(rebuilt.size());
    if (prefix_space && text[s.begin] != ' ') rebuilt += ' ';
    rebuilt.append(text.substr(s.begin, s.end - s.begin));
    pieces.push_back({begin, static_cast<uint32_t>(rebuilt.size())});
  }
  if (gpt2_split) {
    std::vector<Span> split;
    tok::apply_split(*gpt2_split, rebuilt, pieces, split);
    pieces = std::move(split);
  }
  std::string_view r = rebuilt;
  for (const Span& s : pieces) bpe(r.substr(s.begin, s.end - s.begin), out);
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<TokenId>& out) const {
  if (piece.empty()) return;
  if (piece.size() == 1 && byte_id[static_cast<unsigned char>(piece[0])] >= 0) {
    out.push_back(byte_id[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (ignore_merges) {
    auto it = vocab.find(alphabet().encode(piece));
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kCacheMaxPiece;
  if (cacheable) {
    std::shared_lock lock(cache_mu);
    auto it = cache.find(piece);
    if (it != cache.end()) {
      out.insert(out.end(), cache_ids.begin() + it->second.first,
                 cache_ids.begin() + it->second.first + it->second.second);
      return;
    }
  }
  size_t before = out.size();
  merge_word(piece, out);
  if (cacheable) {
    std::unique_lock lock(cache_mu);
    if (cache.size() >= kCacheMaxEntries) {
      cache.clear();
      cache_ids.clear();
    }
    auto [it, inserted] = cache.try_emplace(std::string(piece), static_cast<uint32_t>(cache_ids.size()),
                                            static_cast<uint32_t>(out.size() - before));
    if (inserted) cache_ids.insert(cache_ids.end(), out.begin() + before, out.end());
  }
}

// Merges the bytes of one pre-token by rank: always the lowest-ranked adjacent pair, leftmost on
// ties (tokenizers' Word::merge_all). Symbols live in a doubly linked list over thread-local arrays
// and candidate merges in a binary heap, so the loop allocates nothing once the arrays have grown.
void Tokenizer::Impl::merge_word(std::string_view piece, std::vector<TokenId>& out) const {
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    TokenId id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<TokenId> sym;
  thread_local std::vector<int32_t> prev, next;
  thread_local std::vector<Candidate> heap;
  sym.clear();
  heap.clear();
  for (unsigned char c : piece) {
    TokenId id = byte_id[c];
    if (id < 0) {
      if (!unk) continue;  // tokenizers drops a character it cannot map when there is no unk token
      if (fuse_unk && !sym.empty() && sym.back() == *unk) continue;
      id = *unk;
    }
    sym.push_back(id);
  }
  const int32_t n = static_cast<int32_t>(sym.size());
  prev.resize(n);
  next.resize(n);
  for (int32_t k = 0; k < n; ++k) {
    prev[k] = k - 1;
    next[k] = k + 1 < n ? k + 1 : -1;
  }
  auto greater = [](const Candidate& a, const Candidate& b) { return a > b; };
  auto push = [&](int32_t pos) {
    if (const auto* m = merges.find(sym[pos], sym[next[pos]])) {
      heap.push_back({m->rank, pos, m->id});
      std::push_heap(heap.begin(), heap.end(), greater);
    }
  };
  for (int32_t k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    Candidate top = heap.back();
    heap.pop_back();
    if (sym[top.pos] < 0 || next[top.pos] < 0) continue;  // merged away, or now last
    int32_t right = next[top.pos];
    const auto* m = merges.find(sym[top.pos], sym[right]);
    if (!m || m->id != top.id) continue;  // stale
    sym[top.pos] = top.id;
    sym[right] = -1;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) push(prev[top.pos]);
    if (next[top.pos] >= 0) push(top.pos);
  }
  for (int32_t k = n > 0 ? 0 : -1; k >= 0; k = next[k]) out.push_back(sym[k]);
}

// ---- Loading ----------------------------------------------------------------------------------

namespace {

void load_normalizer(const Json& js, const bj::value& v, const std::string& field, std::vector<tok::NormForm>& out) {
  const bj::object& o = js.object(v, field);
  std::string type = js.type_of(o, field);
  if (type == "NFC")
    out.push_back(tok::NormForm::kNFC);
  else if (type == "NFD")
    out.push_back(tok::NormForm::kNFD);
  else if (type == "NFKC")
    out.push_back(tok::NormForm::kNFKC);
  else if (type == "NFKD")
    out.push_back(tok::NormForm::kNFKD);
  else if (type == "Sequence") {
    std::string f = Json::join(field, "normalizers");
    const bj::array& a = js.array(js.at(o, "normalizers", field), f);
    for (size_t i = 0; i < a.size(); ++i) load_normalizer(js, a[i], Json::index(f, i), out);
  } else {
    js.bad(Json::join(field, "type"),
           fmt::format("unsupported normalizer '{}' (supported: NFC, NFD, NFKC, NFKD, Sequence)", type));
  }
}

tok::SplitBehavior split_behavior(const Json& js, const std::string& s, const std::string& field) {
  if (s == "Isolated") return tok::SplitBehavior::kIsolated;
  if (s == "Removed") return tok::SplitBehavior::kRemoved;
  if (s == "MergedWithPrevious") return tok::SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return tok::SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return tok::SplitBehavior::kContiguous;
  js.bad(field, fmt::format("unknown split behavior '{}'", s));
}

struct PreTokState {
  bool byte_level = false;
  std::vector<tok::SplitStep> steps;
  bool prefix_space = false;
  std::optional<tok::SplitStep> gpt2_split;
};

void load_pretok(const Json& js, const bj::value& v, const std::string& field, const TokenizerOptions& opt,
                 PreTokState& st) {
  const bj::object& o = js.object(v, field);
  std::string type = js.type_of(o, field);
  if (st.byte_level)
    js.bad(Json::join(field, "type"), fmt::format("pre-tokenizer '{}' after ByteLevel is not supported", type));
  if (type == "Sequence") {
    std::string f = Json::join(field, "pretokenizers");
    const bj::array& a = js.array(js.at(o, "pretokenizers", field), f);
    for (size_t i = 0; i < a.size(); ++i) load_pretok(js, a[i], Json::index(f, i), opt, st);
  } else if (type == "Split") {
    std::string pf = Json::join(field, "pattern");
    const bj::object& p = js.object(js.at(o, "pattern", field), pf);
    tok::SplitStep step;
    if (const bj::value* re = js.find(p, "Regex")) {
      step.matcher = tok::make_regex_matcher(js.string(*re, Json::join(pf, "Regex")), opt.builtin_regex,
                                             fmt::format("{}: field '{}'", js.file, Json::join(pf, "Regex")));
    } else if (const bj::value* lit = js.find(p, "String")) {
      step.matcher = tok::make_literal_matcher(js.string(*lit, Json::join(pf, "String")));
    } else {
      js.bad(pf, "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    std::string bf = Json::join(field, "behavior");
    step.behavior = split_behavior(js, js.string(js.at(o, "behavior", field), bf), bf);
    step.invert = js.boolean_or(o, "invert", Json::join(field, "invert"), false);
    st.steps.push_back(std::move(step));
  } else if (type == "Digits") {
    tok::SplitStep step;
    step.matcher = tok::make_numeric_matcher();
    bool individual = js.boolean_or(o, "individual_digits", Json::join(field, "individual_digits"), false);
    step.behavior = individual ? tok::SplitBehavior::kIsolated : tok::SplitBehavior::kContiguous;
    st.steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    st.byte_level = true;
    st.prefix_space = js.boolean_or(o, "add_prefix_space", Json::join(field, "add_prefix_space"), true);
    if (js.boolean_or(o, "use_regex", Json::join(field, "use_regex"), true)) {
      tok::SplitStep step;
      step.matcher = tok::make_regex_matcher(tok::kGpt2Pattern, opt.builtin_regex, "ByteLevel regex");
      st.gpt2_split = std::move(step);
    }
  } else {
    js.bad(Json::join(field, "type"),
           fmt::format("unsupported pre-tokenizer '{}' (supported: Split, ByteLevel, Digits, Sequence)", type));
  }
}

// tokenizer_config.json names a token as a string or as {"content": ...}.
std::optional<std::string> config_token(const Json& js, const bj::object& cfg, std::string_view key) {
  const bj::value* v = js.find(cfg, key);
  if (!v) return std::nullopt;
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_object()) return js.string(js.at(v->get_object(), "content", key), Json::join(key, "content"));
  js.bad(key, fmt::format("expected a string or an object with 'content', got {}", json::kind_name(*v)));
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& path, const TokenizerOptions& options) {
  std::filesystem::path file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  R1_CHECK(std::filesystem::exists(file), "tokenizer: {} does not exist", file.string());
  auto impl = std::make_unique<Impl>();
  impl->file = file.string();
  Json js{file.string()};
  const bj::value root_v = json::parse_file(file);
  const bj::object& root = js.object(root_v, "(root)");

  // Model.
  const bj::object& model = js.object(js.at(root, "model", ""), "model");
  std::string mtype = js.type_of(model, "model");
  if (mtype != "BPE")
    js.bad("model.type", fmt::format("unsupported model '{}' (only byte-level BPE is supported)", mtype));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const bj::value* v = js.find(model, key); v && !js.string(*v, Json::join("model", key)).empty())
      js.bad(Json::join("model", key), "must be empty or null for byte-level BPE");
  }
  if (const bj::value* d = js.find(model, "dropout"); d && !(d->is_number() && d->to_number<double>() == 0.0))
    js.bad("model.dropout", "BPE dropout is not supported (must be null)");
  if (js.boolean_or(model, "byte_fallback", "model.byte_fallback", false))
    js.bad("model.byte_fallback", "byte_fallback is not supported by byte-level BPE");
  impl->fuse_unk = js.boolean_or(model, "fuse_unk", "model.fuse_unk", false);
  impl->ignore_merges = js.boolean_or(model, "ignore_merges", "model.ignore_merges", false);

  const bj::object& vocab = js.object(js.at(model, "vocab", "model"), "model.vocab");
  impl->vocab.reserve(vocab.size());
  TokenId max_id = -1;
  for (const auto& kv : vocab) {
    int64_t id = js.integer(kv.value(), fmt::format("model.vocab[\"{}\"]", std::string_view(kv.key())));
    if (id < 0 || id > INT32_MAX - 1)
      js.bad(fmt::format("model.vocab[\"{}\"]", std::string_view(kv.key())), "id out of range");
    impl->vocab.emplace(std::string(kv.key()), static_cast<TokenId>(id));
    max_id = std::max(max_id, static_cast<TokenId>(id));
  }
  if (auto u = js.find(model, "unk_token")) {
    std::string s = js.string(*u, "model.unk_token");
    auto it = impl->vocab.find(s);
    if (it == impl->vocab.end()) js.bad("model.unk_token", fmt::format("'{}' is not in model.vocab", s));
    impl->unk = it->second;
  }
  const ByteAlphabet& abc = alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    tok::append_utf8(ch, abc.byte_to_cp[b]);
    auto it = impl->vocab.find(ch);
    impl->byte_id[b] = it == impl->vocab.end() ? -1 : it->second;
  }

  const bj::array& merges = js.array(js.at(model, "merges", "model"), "model.merges");
  impl->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    std::string f = Json::index("model.merges", i);
    std::string a, b;
    if (merges[i].is_string()) {
      std::string_view s = merges[i].get_string();
      size_t sp = s.find(' ');
      if (sp == std::string_view::npos) js.bad(f, fmt::format("expected \"left right\", got \"{}\"", s));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (merges[i].is_array() && merges[i].get_array().size() == 2) {
      a = js.string(merges[i].get_array()[0], f + "[0]");
      b = js.string(merges[i].get_array()[1], f + "[1]");
    } else {
      js.bad(f, "expected \"left right\" or [\"left\", \"right\"]");
    }
    auto ia = impl->vocab.find(a), ib = impl->vocab.find(b), im = impl->vocab.find(a + b);
    if (ia == impl->vocab.end()) js.bad(f, fmt::format("'{}' is not in model.vocab", a));
    if (ib == impl->vocab.end()) js.bad(f, fmt::format("'{}' is not in model.vocab", b));
    if (im == impl->vocab.end()) js.bad(f, fmt::format("the merged token '{}' is not in model.vocab", a + b));
    impl->merges.insert(ia->second, ib->second, static_cast<uint32_t>(i), im->second);
  }

  // Normalizer and pre-tokenizer.
  if (const bj::value* n = js.find(root, "normalizer")) load_normalizer(js, *n, "normalizer", impl->norms);
  PreTokState st;
  if (const bj::value* p = js.find(root, "pre_tokenizer")) load_pretok(js, *p, "pre_tokenizer", options, st);
  if (!st.byte_level)
    js.bad("pre_tokenizer", "a ByteLevel pre-tokenizer is required (only byte-level BPE is supported)");
  impl->steps = std::move(st.steps);
  impl->prefix_space = st.prefix_space;
  impl->gpt2_split = std::move(st.gpt2_split);
  if (const bj::value* d = js.find(root, "decoder")) {
    const bj::object& dec = js.object(*d, "decoder");
    std::string t = js.type_of(dec, "decoder");
    if (t != "ByteLevel") js.bad("decoder.type", fmt::format("unsupported decoder '{}' (supported: ByteLevel)", t));
  }

  // Added tokens.
  if (const bj::value* at = js.find(root, "added_tokens")) {
    const bj::array& arr = js.array(*at, "added_tokens");
    for (size_t i = 0; i < arr.size(); ++i) {
      std::string f = Json::index("added_tokens", i);
      const bj::object& o = js.object(arr[i], f);
      AddedToken t;
      int64_t id = js.integer(js.at(o, "id", f), Json::join(f, "id"));
      if (id < 0 || id > INT32_MAX - 1) js.bad(Json::join(f, "id"), "id out of range");
      t.id = static_cast<TokenId>(id);
      t.content = js.string(js.at(o, "content", f), Json::join(f, "content"));
      t.single_word = js.boolean_or(o, "single_word", Json::join(f, "single_word"), false);
      t.lstrip = js.boolean_or(o, "lstrip", Json::join(f, "lstrip"), false);
      t.rstrip = js.boolean_or(o, "rstrip", Json::join(f, "rstrip"), false);
      t.special = js.boolean_or(o, "special", Json::join(f, "special"), false);
      t.normalized = js.boolean_or(o, "normalized", Json::join(f, "normalized"), !t.special);
      if (t.content.empty()) continue;  // tokenizers ignores empty added tokens
      if (utf8::valid_prefix(t.content) != t.content.size()) js.bad(Json::join(f, "content"), "invalid UTF-8");
      max_id = std::max(max_id, t.id);
      impl->added_by_content[t.content] = t.id;
      impl->added.push_back(std::move(t));
    }
  }
  // Special tokens first, then the others, each in file order, as tokenizers builds its tries.
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < impl->added.size(); ++i)
    if (impl->added[i].special) order.push_back(i);
  for (uint32_t i = 0; i < impl->added.size(); ++i)
    if (!impl->added[i].special) order.push_back(i);
  for (uint32_t i : order) {
    const AddedToken& t = impl->added[i];
    if (!t.normalized) {
      impl->raw_trie.add(t.content, i);
      continue;
    }
    std::string content = t.content;
    for (tok::NormForm f : impl->norms) {
      std::string next;
      if (tok::normalize(f, content, next)) content = std::move(next);
    }
    impl->norm_trie.add(content, i);
  }

  // Per-id tables.
  size_t size = static_cast<size_t>(max_id + 1);
  impl->tokens.assign(size, {});
  impl->bytes.assign(size, {});
  impl->special.assign(size, 0);
  impl->present.assign(size, 0);
  for (const auto& [s, id] : impl->vocab) {
    impl->tokens[id] = s;
    impl->present[id] = 1;
  }
  for (const AddedToken& t : impl->added) {
    impl->tokens[t.id] = t.content;
    impl->present[t.id] = 1;
    impl->special[t.id] = t.special;
  }
  for (size_t id = 0; id < size; ++id)
    if (impl->present[id]) impl->bytes[id] = abc.decode(impl->tokens[id]);

  // bos / eos / pad from tokenizer_config.json.
  std::filesystem::path cfg_file = file.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_file)) {
    Json cjs{cfg_file.string()};
    const bj::value cfg_v = json::parse_file(cfg_file);
    const bj::object& cfg = cjs.object(cfg_v, "(root)");
    Tokenizer tmp(std::move(impl));
    auto resolve = [&](std::string_view key) -> std::optional<TokenId> {
      auto s = config_token(cjs, cfg, key);
      if (!s) return std::nullopt;
      auto id = tmp.token_to_id(*s);
      if (!id) cjs.bad(key, fmt::format("token '{}' is not in the vocabulary of {}", *s, file.string()));
      return id;
    };
    auto bos = resolve("bos_token"), eos = resolve("eos_token"), pad = resolve("pad_token");
    tmp.impl_->bos = bos;
    tmp.impl_->eos = eos;
    tmp.impl_->pad = pad;
    return tmp;
  }
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<TokenId> Tokenizer::encode(std::string_view text, SpecialTokens special) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  if (utf8::valid_prefix(text) == text.size()) {
    impl_->encode_into(text, special, ids);
  } else {
    std::string repaired = utf8::repair(text);
    impl_->encode_into(repaired, special, ids);
  }
  return ids;
}

bool Tokenizer::has_id(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->present.size() && impl_->present[id];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string out;
  const Impl& m = *impl_;
  for (TokenId id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= m.present.size() || !m.present[id])
      fail("tokenizer: cannot decode id {}: not in the vocabulary of {} (size {})", id, m.file, m.present.size());
    if (skip_special && m.special[id]) continue;
    out += m.bytes[id];
  }
  if (utf8::valid_prefix(out) != out.size()) return utf8::repair(out);
  return out;
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) return it->second;
  if (auto it = impl_->vocab.find(token); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->present.size() || !impl_->present[id]) return std::nullopt;
  return impl_->tokens[id];
}

size_t Tokenizer::vocab_size() const { return impl_->present.size(); }
bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}
std::optional<TokenId> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<TokenId> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<TokenId> Tokenizer::pad_id() const { return impl_->pad; }

}  // namespace r1
