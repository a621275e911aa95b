// Math answers, text to tree: normalization (LaTeX noise, units, \text{}), a lexer that knows
// LaTeX commands and plain notation, and a recursive-descent parser with implicit multiplication,
// mixed numbers, intervals, sets, tuples and relation chains. Depth and length are bounded.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/strings.hpp"
#include "common/utf8.hpp"
#include "rewards/math_expr.hpp"

namespace r1::rewards::math {

Expr::~Expr() {
  std::vector<P> pending;
  auto take = [&](std::vector<P>& kids) {
    for (auto& k : kids)
      if (k) pending.push_back(std::move(k));
    kids.clear();
  };
  take(kids);
  while (!pending.empty()) {
    P e = std::move(pending.back());
    pending.pop_back();
    // A node another owner still holds is only released here; the last owner dismantles it.
    if (e.use_count() == 1) take(e->kids);
  }  // each e is freed here, childless
}

namespace {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- Normalization ----------------------------------------------------------------------------

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

// Removes a LaTeX command word only when it is not the prefix of a longer command.
void remove_cmd(std::string& s, std::string_view cmd, std::string_view to = "") {
  size_t pos = 0;
  while ((pos = s.find(cmd, pos)) != std::string::npos) {
    size_t end = pos + cmd.size();
    if (std::isalpha(static_cast<unsigned char>(cmd.back())) && end < s.size() &&
        std::isalpha(static_cast<unsigned char>(s[end]))) {
      pos = end;
      continue;
    }
    s.replace(pos, cmd.size(), to);
    pos += to.size();
  }
}

using r1::trim;

const std::unordered_set<std::string>& unit_words() {
  static const std::unordered_set<std::string> u = {
      "cm",      "mm",     "km",     "m",      "meter",  "metre",  "kilometer", "centimeter", "millimeter", "inch",
      "inches",  "in",     "ft",     "foot",   "feet",   "yard",   "yd",        "mile",       "mi",         "mph",
      "kmph",    "kph",    "g",      "kg",     "mg",     "gram",   "kilogram",  "pound",      "lb",         "lbs",
      "oz",      "ounce",  "ton",    "tonne",  "l",      "ml",     "liter",     "litre",      "gallon",     "gal",
      "cup",     "s",      "sec",    "second", "min",    "minute", "h",         "hr",         "hour",       "day",
      "week",    "month",  "year",   "yr",     "dollar", "cent",   "euro",      "rupee",      "rs",         "yuan",
      "unit",    "degree", "deg",    "radian", "rad",    "sq",     "square",    "cubic",      "cu",         "cc",
      "hectare", "acre",   "am",     "pm",     "point",  "people", "person",    "student",    "apple",      "book",
      "page",    "item",   "piece",  "time",   "way",    "mark",   "coin",      "toy",        "box",        "bag",
      "egg",     "car",    "ticket", "marble", "cookie", "candy",  "candies",   "child",      "children",   "men",
      "man",     "women",  "woman",  "boy",    "girl",   "friend", "animal",    "dog",        "cat",        "bird",
      "fish",    "tree",   "flower", "game",   "hat",    "ball",   "pencil",    "pen",        "stamp",      "sticker",
      "card",    "dozen",  "slice",  "pie",    "pizza",  "cake",   "bottle",    "glass",      "ohm",        "volt",
      "watt",    "mps",
  };
  return u;
}

bool is_unit_word(std::string w) {
  for (auto& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // Strip spaces and dots inside ("sq . m").
  w.erase(std::remove_if(w.begin(), w.end(), [](char c) { return c == ' ' || c == '.'; }), w.end());
  const auto& u = unit_words();
  if (u.count(w)) return true;
  if (w.size() > 1 && w.back() == 's' && u.count(w.substr(0, w.size() - 1))) return true;
  if (w.size() > 2 && w.ends_with("es") && u.count(w.substr(0, w.size() - 2))) return true;
  // Compound units: "km/h", "m^2", "cm2", "sqm".
  for (const char* sep : {"/", "^", "per"}) {
    size_t p = w.find(sep);
    if (p != std::string::npos && p > 0) return is_unit_word(w.substr(0, p));
  }
  if (w.size() > 1 && std::isdigit(static_cast<unsigned char>(w.back())))
    return is_unit_word(w.substr(0, w.size() - 1));
  return false;
}

std::string normalize(std::string_view in) {
  std::string s(in);
  // Unicode math symbols to LaTeX.
  static const std::array<std::pair<const char*, const char*>, 17> uni = {{
      {"\u2212", "-"},
      {"\u00d7", "\\times "},
      {"\u00f7", "\\div "},
      {"\u00b7", "\\cdot "},
      {"\u03c0", "\\pi "},
      {"\u221e", "\\infty "},
      {"\u2264", "\\le "},
      {"\u2265", "\\ge "},
      {"\u2260", "\\ne "},
      {"\u221a", "\\sqrt "},
      {"\u00b0", ""},
      {"\u2013", "-"},
      {"\u00bd", "(1/2)"},
      {"\u222a", "\\cup "},
      {"\u2208", "\\in "},
      {"\u00b2", "^2"},
      {"\u00b3", "^3"},
  }};
  for (auto& [a, b] : uni) replace_all(s, a, b);
  // Display/inline math delimiters and LaTeX spacing/sizing noise.
  for (const char* d : {"\\[", "\\]", "\\(", "\\)"}) replace_all(s, d, " ");
  replace_all(s, "\\$", " ");
  replace_all(s, "$", " ");
  for (const char* c :
       {"\\displaystyle", "\\textstyle", "\\scriptstyle", "\\quad",   "\\qquad",    "\\left",  "\\right",
        "\\bigl",         "\\bigr",      "\\Bigl",        "\\Bigr",   "\\biggl",    "\\biggr", "\\big",
        "\\Big",          "\\bigg",      "\\Bigg",        "\\limits", "\\nolimits", "\\hline"})
    remove_cmd(s, c);
  replace_all(s, "\\!", "");  // negative thin space: "11,\\!111" is 11,111
  replace_all(s, "{,}", ",");
  for (const char* c : {"\\,", "\\;", "\\:", "\\ ", "~", "\\>"}) replace_all(s, c, " ");
  remove_cmd(s, "\\dfrac", "\\frac");
  remove_cmd(s, "\\tfrac", "\\frac");
  remove_cmd(s, "\\cfrac", "\\frac");
  remove_cmd(s, "\\dbinom", "\\binom");
  remove_cmd(s, "\\tbinom", "\\binom");
  for (const char* c : {"^{\\circ}", "^\\circ", "^{\\circ }", "\\circ", "\\degree"}) replace_all(s, c, " ");
  for (const char* c : {"\\mathrm{th}", "^{\\text{th}}", "\\text{th}"}) replace_all(s, c, "");
  // "\left." / "\right." leave a bare dot before a delimiter; "\right|" etc. are already plain.
  s = trim(s);
  // Trailing sentence punctuation.
  while (!s.empty() && (s.back() == '.' || s.back() == ';' || s.back() == ',')) {
    s.pop_back();
    s = trim(s);
  }
  return s;
}

// ---- Lexer ------------------------------------------------------------------------------------

enum class T : uint8_t {
  Num,
  Ident,
  Cmd,
  Op,
  LP,
  RP,
  LB,
  RB,
  LC,
  RC,
  LSet,
  RSet,
  Comma,
  Rel,
  Pct,
  Bang,
  Pipe,
  Under,
  Caret,
  Text,
  Prime,
  End
};

struct Tok {
  T t = T::End;
  std::string s;  // identifier/command name, operator char, or text
  bool space_before = false;
  Q q{};
  bool exact = true;
  long double f = 0;
  bool is_float = false;
  bool is_int_literal = false;
  RelOp rel = RelOp::Eq;
};

const std::unordered_set<std::string>& function_names() {
  static const std::unordered_set<std::string> f = {"sin",    "cos",    "tan",    "cot",  "sec",  "csc",
                                                    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
                                                    "ln",     "log",    "exp",    "sqrt", "lg"};
  return f;
}

const std::unordered_set<std::string>& greek() {
  static const std::unordered_set<std::string> g = {
      "alpha",    "beta",    "gamma", "delta",  "epsilon", "varepsilon", "zeta",  "eta",   "theta",
      "vartheta", "iota",    "kappa", "lambda", "mu",      "nu",         "xi",    "rho",   "sigma",
      "tau",      "upsilon", "phi",   "varphi", "chi",     "psi",        "omega", "Gamma", "Delta",
      "Theta",    "Lambda",  "Xi",    "Sigma",  "Phi",     "Psi",        "Omega"};
  return g;
}

class Lexer {
 public:
  Lexer(const std::string& s, const Deadline& dl, bool whole_is_number)
      : s_(s), dl_(dl), whole_number_(whole_is_number) {}

  std::vector<Tok> run() {
    lex(s_, 0);
    Tok end;
    end.t = T::End;
    out_.push_back(end);
    return std::move(out_);
  }

 private:
  const std::string& s_;
  const Deadline& dl_;
  bool whole_number_;
  std::vector<Tok> out_;
  int depth_ = 0;  // bracket nesting, for thousands separators
  unsigned ticks_ = 0;

  bool prev_ends_value() const {
    if (out_.empty()) return false;
    T t = out_.back().t;
    return t == T::Num || t == T::RP || t == T::RC || t == T::RB || t == T::Ident || t == T::Pct;
  }
  void push(Tok t, bool space) {
    t.space_before = space;
    out_.push_back(std::move(t));
  }
  void push_simple(T t, bool space, std::string s = {}) {
    Tok k;
    k.t = t;
    k.s = std::move(s);
    push(std::move(k), space);
  }

  static std::string read_group(const std::string& s, size_t& i) {
    // s[i] == '{': returns the content of the balanced group and moves i past it.
    int depth = 0;
    size_t start = i + 1;
    for (; i < s.size(); ++i) {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
        continue;
      }
      if (s[i] == '{') ++depth;
      if (s[i] == '}' && --depth == 0) {
        std::string g = s.substr(start, i - start);
        ++i;
        return g;
      }
    }
    throw ParseError("unbalanced braces");
  }

  void lex_number(const std::string& s, size_t& i, bool space) {
    size_t start = i;
    std::string digits;
    auto isd = [&](size_t k) { return k < s.size() && std::isdigit(static_cast<unsigned char>(s[k])); };
    while (isd(i)) digits += s[i++];
    // Thousands separators at the top level: 1,234,567 and 1 234 567.
    if (depth_ == 0 && !digits.empty() && digits.size() <= 3 && digits[0] != '0') {
      for (char sep : {',', ' '}) {
        while (i + 3 < s.size() + 0 && i < s.size() && s[i] == sep && isd(i + 1) && isd(i + 2) && isd(i + 3) &&
               !isd(i + 4)) {
          // "1, 234" (comma then space) is a list, not a separator; "1,234" is.
          digits += s.substr(i + 1, 3);
          i += 4;
        }
      }
    }
    std::string frac;
    bool has_point = false;
    if (i < s.size() && s[i] == '.' && isd(i + 1)) {
      has_point = true;
      ++i;
      while (isd(i)) frac += s[i++];
    } else if (whole_number_ && depth_ == 0 && i < s.size() && s[i] == ',' && isd(i + 1)) {
      // A lone "1,22" or "0,111": decimal comma (thousands groups were taken above).
      has_point = true;
      ++i;
      while (isd(i)) frac += s[i++];
    }
    int64_t exp10 = 0;
    bool sci = false;
    if (i + 1 < s.size() && (s[i] == 'e' || s[i] == 'E') && !digits.empty()) {
      size_t k = i + 1;
      bool neg = false;
      if (k < s.size() && (s[k] == '+' || s[k] == '-')) neg = s[k++] == '-';
      if (isd(k)) {
        size_t ks = k;
        while (isd(k)) ++k;
        if (!(k < s.size() && std::isalpha(static_cast<unsigned char>(s[k])))) {
          if (k - ks > 6) throw ParseError("exponent too large");
          exp10 = std::stoll(s.substr(ks, k - ks)) * (neg ? -1 : 1);
          sci = true;
          i = k;
        }
      }
    }
    (void)start;
    Tok t;
    t.t = T::Num;
    t.is_float = has_point;
    t.is_int_literal = !has_point && !sci;
    // Exact value: (digits.frac) * 10^exp10.
    std::string all = digits + frac;
    size_t nz = all.find_first_not_of('0');
    all = nz == std::string::npos ? "0" : all.substr(nz);
    int64_t scale = static_cast<int64_t>(frac.size()) - exp10;
    bool exact = all.size() <= 36 && std::llabs(scale) <= 36;
    if (exact) {
      i128 n = 0;
      for (char c : all) n = n * 10 + (c - '0');
      i128 p = 1;
      for (int64_t k = 0; k < std::llabs(scale); ++k) p *= 10;
      std::optional<Q> q =
          scale >= 0 ? Q::make(n, p) : ((static_cast<long double>(n) * p < 1e37L) ? Q::make(n * p, 1) : std::nullopt);
      if (q)
        t.q = *q;
      else
        exact = false;
    }
    t.exact = exact;
    if (!exact) {
      long double v = std::strtold((digits.empty() ? "0" : digits + (frac.empty() ? "" : "." + frac)).c_str(), nullptr);
      XF x = XF::mul(XF::of(v), XF::exp2(static_cast<long double>(exp10) * std::log2(10.0L)));
      t.f = x.ld();
      if (!std::isfinite(t.f) || (t.f == 0 && v != 0)) throw ParseError("number out of range");
    }
    push(std::move(t), space);
  }

  void lex_text_group(const std::string& content, bool space) {
    std::string c = trim(content);
    if (c.empty()) return;
    std::string low = c;
    for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (low == "and" || low == "or" || low == "," || low == ", and" || low == "and,") {
      push_simple(T::Comma, space);
      return;
    }
    if (prev_ends_value() && is_unit_word(c)) return;
    if (!c.empty() && (std::isdigit(static_cast<unsigned char>(c[0])) || c[0] == '-' || c[0] == '.') &&
        c.find_first_of("abcdfghijklmnopqrstuvwxyzABCDFGHIJKLMNOPQRSTUVWXYZ") == std::string::npos) {
      lex(c, 1);
      return;
    }
    if (low.size() > 2 && low.front() == '(' && low.back() == ')') low = low.substr(1, low.size() - 2);  // "(C)"
    Tok t;
    t.t = T::Text;
    // Text answers compare case- and space-insensitively.
    for (char ch : low)
      if (!std::isspace(static_cast<unsigned char>(ch))) t.s += ch;
    push(std::move(t), space);
  }

  void lex(const std::string& s, int level) {
    if (level > 8) throw ParseError("text nesting too deep");
    size_t i = 0;
    bool space = false;
    while (i < s.size()) {
      dl_.tick(ticks_);
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (std::isspace(c)) {
        space = true;
        ++i;
        continue;
      }
      if (std::isdigit(c) || (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))))
        lex_number(s, i, space);
      else if (std::isalpha(c))
        lex_word(s, i, space);
      else if (c == '\\')
        lex_backslash(s, i, space);
      else
        lex_symbol(s, i, space);
      space = false;
    }
  }

  // A run of letters at s[i]: a word operator, function, constant, dropped unit, text or symbols.
  void lex_word(const std::string& s, size_t& i, bool space) {
    size_t j = i;
    while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
    std::string w = s.substr(i, j - i);
    std::string low = w;
    for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (low == "pct" || low == "percent" || low == "percentage") {
      push_simple(T::Pct, space);
    } else if (w.size() > 1 && (low == "and" || low == "or")) {
      push_simple(T::Comma, space);
    } else if (w.size() > 1 && function_names().count(low)) {
      push_simple(T::Cmd, space, low);
    } else if (low == "pi") {
      push_simple(T::Ident, space, "pi");
    } else if (low == "inf" || low == "infinity" || low == "infty") {
      push_simple(T::Ident, space, "infty");
    } else if (w.size() > 1 && prev_ends_value() && is_unit_word(w)) {
      // "5 cm", "12 apples": units and counted nouns after a value are dropped, with "^2".
      if (j + 1 < s.size() && s[j] == '^') {
        j += 1;
        if (j < s.size() && s[j] == '{') {
          size_t k = j;
          read_group(s, k);
          j = k;
        } else if (j < s.size()) {
          ++j;
        }
      }
    } else if (w.size() >= 3) {
      Tok t;  // a plain word: a text answer ("yes", "none")
      t.t = T::Text;
      t.s = low;
      push(std::move(t), space);
    } else {
      for (char ch : w) push_simple(T::Ident, space, std::string(1, ch)), space = false;
    }
    i = j;
  }

  // A backslash at s[i]: an escaped character (\{, \%, \\, ...) or a command.
  void lex_backslash(const std::string& s, size_t& i, bool space) {
    size_t j = i + 1;
    if (j < s.size() && !std::isalpha(static_cast<unsigned char>(s[j]))) {
      char d = s[j];
      if (d == '{')
        push_simple(T::LSet, space), ++depth_;
      else if (d == '}')
        push_simple(T::RSet, space), --depth_;
      else if (d == '%')
        push_simple(T::Pct, space);
      else if (d == '|')
        push_simple(T::Pipe, space);
      else if (d == '\\')
        push_simple(T::Comma, space);  // matrix/array row break
      else
        throw ParseError(std::string("unsupported command \\") + d);
      i = j + 1;
    } else {
      while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
      std::string cmd = s.substr(i + 1, j - i - 1);
      i = j;
      lex_command(s, i, cmd, space);
    }
  }

  // One punctuation or operator character at s[i] (two for <=, >=, !=).
  void lex_symbol(const std::string& s, size_t& i, bool space) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '+':
      case '-':
      case '*':
      case '/': push_simple(T::Op, space, std::string(1, static_cast<char>(c))); break;
      case '(': push_simple(T::LP, space), ++depth_; break;
      case ')': push_simple(T::RP, space), --depth_; break;
      case '[': push_simple(T::LB, space), ++depth_; break;
      case ']': push_simple(T::RB, space), --depth_; break;
      case '{': push_simple(T::LC, space), ++depth_; break;
      case '}': push_simple(T::RC, space), --depth_; break;
      case ',': push_simple(T::Comma, space); break;
      case ';': push_simple(T::Comma, space); break;
      case '%': push_simple(T::Pct, space); break;
      case '!':
        if (i + 1 < s.size() && s[i + 1] == '=') {
          Tok t;
          t.t = T::Rel;
          t.rel = RelOp::Ne;
          push(std::move(t), space);
          ++i;
        } else {
          push_simple(T::Bang, space);
        }
        break;
      case '|': push_simple(T::Pipe, space); break;
      case '_': push_simple(T::Under, space); break;
      case '^': push_simple(T::Caret, space); break;
      case '\'': push_simple(T::Prime, space); break;
      case '&': break;  // alignment
      case '=':
      case '<':
      case '>': {
        Tok t;
        t.t = T::Rel;
        bool eq_next = i + 1 < s.size() && s[i + 1] == '=';
        t.rel = c == '=' ? RelOp::Eq : c == '<' ? (eq_next ? RelOp::Le : RelOp::Lt) : (eq_next ? RelOp::Ge : RelOp::Gt);
        if (eq_next) ++i;
        push(std::move(t), space);
        break;
      }
      default: {  // name the whole code point, not one byte of it
        size_t n = 1;
        while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80 && n < 4) ++n;
        throw ParseError("unexpected character '" + utf8::repair(s.substr(i, n)) + "'");
      }
    }
    ++i;
  }

  void lex_command(const std::string& s, size_t& i, const std::string& cmd, bool space) {
    auto skip_ws = [&] {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    };
    auto rel = [&](RelOp op) {
      Tok t;
      t.t = T::Rel;
      t.rel = op;
      push(std::move(t), space);
    };
    if (cmd == "text" || cmd == "textbf" || cmd == "textit" || cmd == "textrm" || cmd == "mbox" ||
        cmd == "textnormal" || cmd == "hbox") {
      skip_ws();
      if (i < s.size() && s[i] == '{') lex_text_group(read_group(s, i), space);
      return;
    }
    if (cmd == "mathrm" || cmd == "mathbf" || cmd == "mathit" || cmd == "operatorname" || cmd == "mathsf" ||
        cmd == "boldsymbol" || cmd == "mathnormal" || cmd == "boxed" || cmd == "fbox" || cmd == "bf" || cmd == "rm") {
      skip_ws();
      if (i < s.size() && s[i] == '{') {
        std::string g = trim(read_group(s, i));
        std::string low = g;
        for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (cmd != "boxed" && cmd != "fbox" && function_names().count(low))
          push_simple(T::Cmd, space, low);
        else if (cmd != "boxed" && cmd != "fbox" && prev_ends_value() && g.size() > 0 && is_unit_word(g)) {
          // \mathrm{cm}^2: the unit's power goes with it.
          if (i < s.size() && s[i] == '^') {
            ++i;
            if (i < s.size() && s[i] == '{')
              read_group(s, i);
            else if (i < s.size())
              ++i;
          }
          return;
        } else {
          push_simple(T::LC, space);
          ++depth_;
          lex(g, 1);
          --depth_;
          push_simple(T::RC, false);
        }
      }
      return;
    }
    if (cmd == "cdot" || cmd == "times" || cmd == "ast") return push_simple(T::Op, space, "*");
    if (cmd == "div") return push_simple(T::Op, space, "/");
    if (cmd == "pm") return push_simple(T::Op, space, "pm");
    if (cmd == "mp") return push_simple(T::Op, space, "mp");
    if (cmd == "cup") return push_simple(T::Op, space, "cup");
    if (cmd == "le" || cmd == "leq" || cmd == "leqslant") return rel(RelOp::Le);
    if (cmd == "ge" || cmd == "geq" || cmd == "geqslant") return rel(RelOp::Ge);
    if (cmd == "lt") return rel(RelOp::Lt);
    if (cmd == "gt") return rel(RelOp::Gt);
    if (cmd == "ne" || cmd == "neq") return rel(RelOp::Ne);
    if (cmd == "in" || cmd == "approx" || cmd == "equiv") return rel(RelOp::Eq);
    if (cmd == "infty" || cmd == "infin") return push_simple(T::Ident, space, "infty");
    if (cmd == "pi") return push_simple(T::Ident, space, "pi");
    if (cmd == "emptyset" || cmd == "varnothing") return push_simple(T::Cmd, space, "emptyset");
    if (cmd == "lvert" || cmd == "rvert" || cmd == "vert" || cmd == "mid") return push_simple(T::Pipe, space);
    if (cmd == "lfloor" || cmd == "rfloor" || cmd == "lceil" || cmd == "rceil" || cmd == "frac" || cmd == "sqrt" ||
        cmd == "binom" || cmd == "choose" || function_names().count(cmd))
      return push_simple(T::Cmd, space, cmd);
    if (cmd == "percent") return push_simple(T::Pct, space);
    if (greek().count(cmd)) return push_simple(T::Ident, space, cmd);
    if (cmd == "dots" || cmd == "ldots" || cmd == "cdots")
      throw ParseError("sequences with \\dots are compared as text");
    throw ParseError("unsupported command \\" + cmd);
  }
};

// ---- Parser -----------------------------------------------------------------------------------

P num(Q q) {
  auto e = std::make_shared<Expr>();
  e->k = K::Num;
  e->q = q;
  return e;
}
P node(K k, std::vector<P> kids, std::string name = {}) {
  auto e = std::make_shared<Expr>();
  e->k = k;
  e->kids = std::move(kids);
  e->name = std::move(name);
  return e;
}

class Parser {
 public:
  Parser(std::vector<Tok> toks, const Deadline& dl, int max_depth)
      : t_(std::move(toks)), dl_(dl), max_depth_(max_depth) {}

  P top() {
    auto items = list();
    if (cur().t != T::End) throw ParseError("unexpected trailing input");
    if (items.empty()) throw ParseError("empty answer");
    if (items.size() == 1) return items[0];
    // "n = 2, 3, 4": an assignment whose right side is the whole list.
    const P& first = items[0];
    bool rest_plain = std::all_of(items.begin() + 1, items.end(), [](const P& p) { return p->k != K::Rel; });
    if (first->k == K::Rel && first->ops.size() == 1 && first->ops[0] == RelOp::Eq && first->kids[0]->k == K::Sym &&
        rest_plain) {
      std::vector<P> vals{first->kids[1]};
      vals.insert(vals.end(), items.begin() + 1, items.end());
      auto r = node(K::Rel, {first->kids[0], node(K::Set, std::move(vals))});
      r->ops = {RelOp::Eq};
      return r;
    }
    return node(K::Set, std::move(items));
  }

 private:
  std::vector<Tok> t_;
  size_t i_ = 0;
  const Deadline& dl_;
  int max_depth_;
  int depth_ = 0;
  int abs_depth_ = 0;
  unsigned ticks_ = 0;

  struct Guard {
    Parser& p;
    explicit Guard(Parser& p) : p(p) {
      p.dl_.tick(p.ticks_);
      if (++p.depth_ > p.max_depth_) throw ParseError("expression nested too deeply");
    }
    ~Guard() { --p.depth_; }
  };

  const Tok& cur() const { return t_[i_]; }
  const Tok& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  bool is_op(const char* s) const { return cur().t == T::Op && cur().s == s; }
  void expect(T t, const char* what) {
    if (cur().t != t) throw ParseError(std::string("expected ") + what);
    ++i_;
  }

  // list := rel (',' rel)*   (stops at closers)
  std::vector<P> list() {
    Guard g(*this);
    std::vector<P> items;
    if (cur().t == T::RP || cur().t == T::RB || cur().t == T::RC || cur().t == T::RSet || cur().t == T::End)
      return items;
    items.push_back(rel());
    while (cur().t == T::Comma) {
      ++i_;
      while (cur().t == T::Comma) ++i_;  // ", and"
      if (cur().t == T::End || cur().t == T::RP || cur().t == T::RB || cur().t == T::RC || cur().t == T::RSet) break;
      items.push_back(rel());
    }
    return items;
  }

  P rel() {
    Guard g(*this);
    P first = union_();
    if (cur().t != T::Rel) return first;
    auto r = node(K::Rel, {first});
    while (cur().t == T::Rel) {
      r->ops.push_back(cur().rel);
      ++i_;
      r->kids.push_back(union_());
    }
    return r;
  }

  P union_() {
    Guard g(*this);
    P a = sum();
    if (!is_op("cup")) return a;
    auto u = node(K::Union, {a});
    while (is_op("cup")) {
      ++i_;
      u->kids.push_back(sum());
    }
    return u;
  }

  static P plus_minus(P a, P b, bool pm) {
    // a ± b is the set {a + b, a - b}.
    P s1 = node(K::Add, {a, pm ? b : node(K::Neg, {b})});
    P s2 = node(K::Add, {a, pm ? node(K::Neg, {b}) : b});
    return node(K::Set, {s1, s2});
  }

  P sum() {
    Guard g(*this);
    P a;
    if (is_op("pm") || is_op("mp")) {
      bool pm = cur().s == "pm";
      ++i_;
      P b = term();
      a = pm ? node(K::Set, {b, node(K::Neg, {b})}) : node(K::Set, {node(K::Neg, {b}), b});
    } else {
      a = term();
    }
    while (true) {
      if (is_op("+")) {
        ++i_;
        a = node(K::Add, {a, term()});
      } else if (is_op("-")) {
        ++i_;
        a = node(K::Add, {a, node(K::Neg, {term()})});
      } else if (is_op("pm") || is_op("mp")) {
        bool pm = cur().s == "pm";
        ++i_;
        a = plus_minus(a, term(), pm);
      } else {
        return a;
      }
    }
  }

  bool starts_atom() const {
    switch (cur().t) {
      case T::Num:
      case T::Ident:
      case T::LP:
      case T::LC:
      case T::Text: return true;
      case T::Cmd: return true;
      case T::Pipe: return abs_depth_ == 0;
      case T::LB: return false;
      default: return false;
    }
  }

  static bool is_int_lit(const P& p) {
    return p->k == K::Num && p->exact && p->q.is_int() && !p->is_float && p->q.n >= 0;
  }

  P term() {
    Guard g(*this);
    P a = unary();
    while (true) {
      if (is_op("*")) {
        ++i_;
        a = node(K::Mul, {a, unary()});
      } else if (is_op("/")) {
        ++i_;
        a = node(K::Div, {a, unary()});
      } else if (starts_atom()) {
        // Mixed numbers: 2\frac{1}{2} and "3 1/2".
        if (is_int_lit(a) && cur().t == T::Cmd && cur().s == "frac") {
          P f = power();
          if (f->k == K::Div && is_int_lit(f->kids[0]) && is_int_lit(f->kids[1])) {
            a = node(K::Add, {a, f});
            continue;
          }
          a = node(K::Mul, {a, f});
          continue;
        }
        if (is_int_lit(a) && cur().t == T::Num && cur().space_before && cur().is_int_literal && peek().t == T::Op &&
            peek().s == "/" && peek(2).t == T::Num && peek(2).is_int_literal) {
          P n = power();
          ++i_;
          P d = power();
          a = node(K::Add, {a, node(K::Div, {n, d})});
          continue;
        }
        a = node(K::Mul, {a, power()});
      } else {
        return a;
      }
    }
  }

  P unary() {
    Guard g(*this);
    if (is_op("-")) {
      ++i_;
      return node(K::Neg, {unary()});
    }
    if (is_op("+")) {
      ++i_;
      return unary();
    }
    return power();
  }

  P exponent() {
    Guard g(*this);
    // ^{...}, ^-1, ^2, ^x, ^\frac..., ^(...)
    if (is_op("-")) {
      ++i_;
      return node(K::Neg, {exponent()});
    }
    return postfix();
  }

  P power() {
    Guard g(*this);
    P b = postfix();
    if (cur().t == T::Caret) {
      ++i_;
      P e = exponent();
      // Right-associative: 2^3^2 = 2^(3^2).
      if (cur().t == T::Caret) {
        ++i_;
        e = node(K::Pow, {e, exponent()});
      }
      b = node(K::Pow, {b, e});
    }
    return b;
  }

  P postfix() {
    Guard g(*this);
    P a = atom();
    while (true) {
      if (cur().t == T::Bang) {
        ++i_;
        a = node(K::Fact, {a});
      } else if (cur().t == T::Pct) {
        ++i_;
        a = node(K::Pct, {a});
      } else if (cur().t == T::Prime && a->k == K::Sym) {
        ++i_;
        a->name += "'";
      } else if (cur().t == T::Under) {
        ++i_;
        std::string sub = subscript_text();
        if (a->k == K::Sym)
          a->name += "_" + sub;
        else
          throw ParseError("subscript on a non-symbol");
      } else {
        return a;
      }
    }
  }

  std::string subscript_text() {
    // x_1, x_{12}, a_{n+1}: the subscript becomes part of the symbol's name.
    std::string out;
    if (cur().t == T::LC) {
      int d = 0;
      do {
        const Tok& t = cur();
        if (t.t == T::End) throw ParseError("unbalanced subscript");
        if (t.t == T::LC)
          ++d;
        else if (t.t == T::RC)
          --d;
        else if (t.t == T::Num)
          out += t.exact ? std::to_string(static_cast<long long>(t.q.n)) : "n";
        else
          out += t.s.empty() ? "?" : t.s;
        ++i_;
      } while (d > 0);
      return out;
    }
    const Tok& t = cur();
    if (t.t == T::Num)
      out = std::to_string(static_cast<long long>(t.q.n));
    else if (t.t == T::Ident)
      out = t.s;
    else
      throw ParseError("bad subscript");
    ++i_;
    return out;
  }

  // A braced group {…} or a single token argument (\frac12).
  P arg() {
    Guard g(*this);
    if (cur().t == T::LC) {
      ++i_;
      auto items = list();
      expect(T::RC, "'}'");
      if (items.size() != 1) throw ParseError("expected one expression in braces");
      return items[0];
    }
    if (cur().t == T::Num && cur().is_int_literal) {
      // \frac12: single digits.
      Tok t = cur();
      ++i_;
      std::string digits = std::to_string(static_cast<long long>(t.q.n));
      if (digits.size() > 1) {
        // Split the first digit off and push the rest back as a new number token.
        Tok rest = t;
        rest.q = Q{static_cast<i128>(std::stoll(digits.substr(1))), 1};
        rest.space_before = false;
        t_.insert(t_.begin() + static_cast<long>(i_), rest);
        return num(Q{digits[0] - '0', 1});
      }
      return num(t.q);
    }
    return atom();
  }

  P group_contents(T close, const char* close_name) {
    auto items = list();
    expect(close, close_name);
    if (items.size() != 1) throw ParseError("expected one expression");
    return items[0];
  }

  P func_call(const std::string& name) {
    Guard g(*this);
    std::vector<P> args;
    P power_of;
    P base;
    if (name == "log" && cur().t == T::Under) {
      ++i_;
      base = arg();
    }
    if (cur().t == T::Caret) {  // \sin^2 x
      ++i_;
      power_of = exponent();
    }
    P x;
    if (cur().t == T::LP) {
      ++i_;
      x = group_contents(T::RP, "')'");
    } else if (cur().t == T::LC) {
      x = arg();
    } else {
      x = power();
    }
    std::string fname = name == "lg" ? "log10" : name;
    P call = base ? node(K::Func, {x, base}, "log") : node(K::Func, {x}, fname);
    if (power_of) call = node(K::Pow, {call, power_of});
    return call;
  }

  P atom() {
    Guard g(*this);
    const Tok t = cur();
    switch (t.t) {
      case T::Num: {
        ++i_;
        auto e = std::make_shared<Expr>();
        e->k = K::Num;
        e->q = t.q;
        e->exact = t.exact;
        e->f = t.f;
        e->is_float = t.is_float;
        return e;
      }
      case T::Ident: {
        ++i_;
        return node(K::Sym, {}, t.s);
      }
      case T::Text: {
        ++i_;
        return node(K::Text, {}, t.s);
      }
      case T::LC: {
        ++i_;
        auto items = list();
        expect(T::RC, "'}'");
        if (items.empty()) throw ParseError("empty braces");
        return items.size() == 1 ? items[0] : node(K::Set, std::move(items));
      }
      case T::LSet: {
        ++i_;
        auto items = list();
        expect(T::RSet, "'\\}'");
        return node(K::Set, std::move(items));
      }
      case T::Pipe: {
        ++i_;
        ++abs_depth_;
        P x = sum();
        --abs_depth_;
        expect(T::Pipe, "closing '|'");
        return node(K::Func, {x}, "abs");
      }
      case T::LP:
      case T::LB: ++i_; return bracketed(t.t == T::LB);
      case T::Cmd: ++i_; return command(t.s);
      default: throw ParseError("unexpected token");
    }
  }

  // After an opening ( or [ (`lo_closed`: it was [): a value, an interval or a tuple.
  P bracketed(bool lo_closed) {
    auto items = list();
    T close = cur().t;
    if (close != T::RP && close != T::RB) throw ParseError("expected ')' or ']'");
    ++i_;
    bool lo = lo_closed, hi = close == T::RB;
    if (items.size() == 1 && lo == hi) return items[0];
    if (items.size() == 2) {
      auto iv = node(K::Interval, std::move(items));
      iv->lo_closed = lo;
      iv->hi_closed = hi;
      iv->paren_pair = !lo && !hi;
      return iv;
    }
    if (items.empty()) throw ParseError("empty brackets");
    if (lo != hi) throw ParseError("half-open brackets around a list");
    return node(K::Tuple, std::move(items));
  }

  // After a command token: \frac, \binom, \sqrt, floor and ceiling brackets, \emptyset, functions.
  P command(const std::string& c) {
    if (c == "frac") {
      P n = arg();
      P d = arg();
      return node(K::Div, {n, d});
    }
    if (c == "binom") {
      P n = arg();
      P k = arg();
      return node(K::Func, {n, k}, "binom");
    }
    if (c == "sqrt") {
      P idx;
      if (cur().t == T::LB) {
        ++i_;
        idx = group_contents(T::RB, "']'");
      }
      P x = cur().t == T::LP ? (++i_, group_contents(T::RP, "')'")) : arg();
      return idx ? node(K::Func, {x, idx}, "root") : node(K::Func, {x}, "sqrt");
    }
    if (c == "lfloor") {
      P x = sum();
      if (!(cur().t == T::Cmd && cur().s == "rfloor")) throw ParseError("expected \\rfloor");
      ++i_;
      return node(K::Func, {x}, "floor");
    }
    if (c == "lceil") {
      P x = sum();
      if (!(cur().t == T::Cmd && cur().s == "rceil")) throw ParseError("expected \\rceil");
      ++i_;
      return node(K::Func, {x}, "ceil");
    }
    if (c == "emptyset") return node(K::Set, {});
    if (function_names().count(c)) return func_call(c);
    throw ParseError("unexpected \\" + c);
  }
};

bool whole_is_plain_number(const std::string& s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  size_t digits = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == ',' || s[i] == '.')) {
    digits += std::isdigit(static_cast<unsigned char>(s[i])) ? 1 : 0;
    ++i;
  }
  return i == s.size() && digits > 0 && std::count(s.begin(), s.end(), ',') == 1;
}

}  // namespace

std::string normalized_text(std::string_view answer) {
  std::string n = normalize(answer);
  n.erase(std::remove_if(n.begin(), n.end(), [](unsigned char c) { return std::isspace(c); }), n.end());
  return n;
}

Parsed parse(std::string_view answer, const Deadline& dl, const Limits& lim) {
  Parsed out;
  if (answer.size() > lim.max_chars) {
    out.error = "answer longer than " + std::to_string(lim.max_chars) + " characters";
    return out;
  }
  std::string norm = normalize(answer);
  out.normalized = norm;
  out.normalized.erase(
      std::remove_if(out.normalized.begin(), out.normalized.end(), [](unsigned char c) { return std::isspace(c); }),
      out.normalized.end());
  try {
    Lexer lx(norm, dl, whole_is_plain_number(norm));
    Parser ps(lx.run(), dl, lim.max_depth);
    out.expr = ps.top();
  } catch (const ParseError& e) {
    out.error = e.what();
  } catch (const std::invalid_argument& e) {
    out.error = "bad number";
  } catch (const std::out_of_range& e) {
    out.error = "number out of range";
  }
  return out;
}

}  // namespace r1::rewards::math
