// Math answers, extraction: where in a completion the final answer is. Priorities follow
// Math-Verify's (boxed first, then "final answer is"/"answer:", then the last math span, then the
// last number) with two R1 additions: R1-Zero <answer> tags and GSM8K "####".
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "common/strings.hpp"
#include "rewards/math.hpp"

namespace r1::rewards::math {
namespace {

using r1::trim;

std::string lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

struct Box {
  size_t start, end;  // [start, end) of the whole \boxed{...}
  std::string content;
};

// Finds \boxed{…} / \fbox{…} from the right, with balanced braces; an unclosed last box takes the
// rest of the text.
std::vector<Box> find_boxes(std::string_view t) {
  std::vector<Box> boxes;
  size_t pos = 0;
  while (true) {
    size_t b = t.find("\\boxed", pos), f = t.find("\\fbox", pos);
    size_t s = std::min(b, f);
    if (s == std::string_view::npos) break;
    size_t i = s + (s == b ? 6 : 5);
    while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
    if (i < t.size() && t[i] == '{') {
      int depth = 0;
      size_t j = i;
      for (; j < t.size(); ++j) {
        if (t[j] == '\\' && j + 1 < t.size() && (t[j + 1] == '{' || t[j + 1] == '}')) {
          ++j;
          continue;
        }
        if (t[j] == '{')
          ++depth;
        else if (t[j] == '}' && --depth == 0)
          break;
      }
      if (j >= t.size()) {
        boxes.push_back({s, t.size(), trim(t.substr(i + 1))});
        break;
      }
      boxes.push_back({s, j + 1, trim(t.substr(i + 1, j - i - 1))});
      pos = j + 1;
    } else if (i < t.size() && i > s + 5 && std::isspace(static_cast<unsigned char>(t[i - 1]))) {
      // "\boxed 5": one token.
      size_t j = i;
      while (j < t.size() && !std::isspace(static_cast<unsigned char>(t[j])) && t[j] != '$') ++j;
      boxes.push_back({s, j, std::string(t.substr(i, j - i))});
      pos = j;
    } else {
      pos = i;
    }
  }
  return boxes;
}

bool has_separator(std::string_view between) {
  if (between.find(',') != std::string_view::npos || between.find(';') != std::string_view::npos) return true;
  std::string l = lower(between);
  for (const char* w : {"and", "or"}) {
    size_t p = 0;
    while ((p = l.find(w, p)) != std::string::npos) {
      size_t e = p + std::string_view(w).size();
      bool left = p == 0 || !std::isalnum(static_cast<unsigned char>(l[p - 1]));
      bool right = e >= l.size() || !std::isalnum(static_cast<unsigned char>(l[e]));
      if (left && right) return true;
      p = e;
    }
  }
  return false;
}

// The last box, plus earlier boxes that belong to the same answer (Math-Verify's rule: gap under
// 10 characters, or under 70 with a separator — comma, semicolon, "and", "or" — and different
// content). Several boxes form a comma list, i.e. a set.
std::optional<std::string> boxed_answer(std::string_view t) {
  auto boxes = find_boxes(t);
  if (boxes.empty()) return std::nullopt;
  std::vector<std::string> parts{boxes.back().content};
  for (size_t k = boxes.size() - 1; k > 0; --k) {
    const Box& prev = boxes[k - 1];
    const Box& next = boxes[k];
    std::string_view between = t.substr(prev.end, next.start - prev.end);
    bool ok = between.size() < 10 || (between.size() < 70 && prev.content != parts.back() && has_separator(between));
    if (!ok) break;
    if (prev.content != parts.back()) parts.push_back(prev.content);
  }
  std::reverse(parts.begin(), parts.end());
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
  return out;
}

// The last math span: $$…$$, \[…\], \(…\) or $…$.
std::optional<std::string> last_math_span(std::string_view t) {
  std::optional<std::string> best;
  size_t best_end = 0;
  auto consider = [&](size_t end, std::string content) {
    if (end >= best_end && !trim(content).empty()) {
      best_end = end;
      best = trim(content);
    }
  };
  for (auto [open, close] : {std::pair<std::string_view, std::string_view>{"\\[", "\\]"}, {"\\(", "\\)"}}) {
    size_t p = 0;
    while ((p = t.find(open, p)) != std::string_view::npos) {
      size_t q = t.find(close, p + 2);
      if (q == std::string_view::npos) break;
      consider(q + 2, std::string(t.substr(p + 2, q - p - 2)));
      p = q + 2;
    }
  }
  // Dollars: pair them left to right ($$ counts as one delimiter), skipping escaped \$.
  size_t i = 0;
  while (i < t.size()) {
    if (t[i] == '$' && (i == 0 || t[i - 1] != '\\')) {
      bool dbl = i + 1 < t.size() && t[i + 1] == '$';
      size_t w = dbl ? 2 : 1;
      size_t j = i + w;
      while (j < t.size()) {
        if (t[j] == '$' && t[j - 1] != '\\') break;
        if (!dbl && t[j] == '\n') break;
        ++j;
      }
      if (j >= t.size()) break;
      if (!dbl && t[j] != '$') {  // newline: not a span
        i = j;
        continue;
      }
      // A "$" followed by a digit and no closing in sight is a currency sign; a span of a single
      // number is still fine.
      consider(j + w, std::string(t.substr(i + w, j - i - w)));
      i = j + w;
    } else {
      ++i;
    }
  }
  return best;
}

bool is_num_char(char c) { return std::isdigit(static_cast<unsigned char>(c)); }

// The last number or simple arithmetic expression in plain text ("1,234.5", "-3", "1/2", "45%").
// The span [start, end) of the last number or simple expression of `t`, skipping digits glued to
// letters ("AZYUK2A" has none); nullopt when there is none. Iterative and linear in |t|.
std::optional<std::pair<size_t, size_t>> last_number_span(std::string_view t) {
  auto expr_char = [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == ',' || c == '/' || c == '+' || c == '-' ||
           c == '*' || c == '^' || c == '(' || c == ')';
  };
  size_t i = t.size();
  while (true) {
    while (i > 0 && !is_num_char(t[i - 1])) --i;
    if (i == 0) return std::nullopt;
    const size_t end = i;
    size_t start = end;
    while (start > 0 && expr_char(t[start - 1])) --start;
    // Thousands groups separated by spaces ("1 000 000").
    while (start >= 2 && t[start - 1] == ' ' && is_num_char(t[start - 2]) && end - start >= 3 &&
           std::all_of(t.begin() + static_cast<long>(start), t.begin() + static_cast<long>(start) + 3, is_num_char) &&
           (start + 3 == end || !is_num_char(t[start + 3]))) {
      size_t s2 = start - 1;
      while (s2 > 0 && is_num_char(t[s2 - 1])) --s2;
      if (start - 1 - s2 > 3) break;
      start = s2;
    }
    if (start > 0 && std::isalpha(static_cast<unsigned char>(t[start - 1]))) {
      i = start - 1;  // glued to letters: not a number; look further left
      continue;
    }
    return std::make_pair(start, end);
  }
}

std::optional<std::string> last_number(std::string_view t) {
  const auto span = last_number_span(t);
  if (!span) return std::nullopt;
  const auto [start, end] = *span;
  std::string s(t.substr(start, end - start));
  // Trim punctuation that is not part of the number.
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ',' || (s[b] == '.' && !(e - b > 1 && is_num_char(s[b + 1]))) || s[b] == '+' ||
                   s[b] == '*' || s[b] == '/' || s[b] == ')' || s[b] == '^'))
    ++b;
  while (e > b && (s[e - 1] == ',' || s[e - 1] == '.' || s[e - 1] == '(')) --e;
  // Balance parentheses by dropping unmatched ones at the edges (counted once: linear).
  int64_t open = std::count(s.begin() + static_cast<long>(b), s.begin() + static_cast<long>(e), '(');
  int64_t close = std::count(s.begin() + static_cast<long>(b), s.begin() + static_cast<long>(e), ')');
  while (b < e && s[b] == '(' && open > close) ++b, --open;
  while (e > b && s[e - 1] == ')' && close > open) --e, --close;
  s = s.substr(b, e - b);
  if (s.empty()) return std::nullopt;
  // Percent right after the number.
  size_t after = end;
  while (after < t.size() && t[after] == ' ') ++after;
  if (after < t.size() && t[after] == '%')
    s += "%";
  else if (t.substr(after, 7) == "percent")
    s += "%";
  return s;
}

// Text after the last occurrence of `phrase` (case-insensitive), up to the end of its sentence.
std::optional<std::string> after_phrase(std::string_view t, std::string_view phrase) {
  std::string l = lower(t);
  size_t p = l.rfind(phrase);
  if (p == std::string::npos) return std::nullopt;
  size_t s = p + phrase.size();
  while (s < t.size() && (t[s] == ':' || t[s] == ' ' || t[s] == '*' || t[s] == '\t')) ++s;
  size_t e = s;
  int dollars = 0;
  while (e < t.size()) {
    char c = t[e];
    if (c == '$') ++dollars;
    if (c == '\n' && dollars % 2 == 0 && e > s) break;
    // A period followed by whitespace/end ends the sentence unless inside math.
    if (c == '.' && dollars % 2 == 0 && (e + 1 >= t.size() || std::isspace(static_cast<unsigned char>(t[e + 1]))) &&
        !(e > s && std::isdigit(static_cast<unsigned char>(t[e - 1])) && e + 1 < t.size() &&
          std::isdigit(static_cast<unsigned char>(t[e + 1]))))
      break;
    ++e;
  }
  std::string seg = trim(t.substr(s, e - s));
  if (seg.empty()) return std::nullopt;
  return seg;
}

// An anchored segment ("the answer is …") can be a sentence: prefer a math span or a box in it,
// then the segment itself when it is short, then its first number.
std::string refine_segment(const std::string& seg) {
  if (auto b = boxed_answer(seg)) return *b;
  if (seg.find('$') != std::string::npos || seg.find("\\(") != std::string::npos ||
      seg.find("\\[") != std::string::npos)
    if (auto m = last_math_span(seg)) return *m;
  return seg;
}

// A short completion that is nothing but math ("\frac{10}{9}", "-10/9", "x^2+1"): no English
// words (letter runs of 3+ outside commands) and no newline.
std::optional<std::string> whole_answer(std::string_view t) {
  std::string s = trim(t);
  if (s.empty() || s.size() > 120 || s.find('\n') != std::string::npos) return std::nullopt;
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (std::isalpha(static_cast<unsigned char>(s[i]))) {
      if (run == 0 && i > 0 && s[i - 1] == '\\') run = 1000;  // a command name
      ++run;
      if (run >= 3 && run < 1000) return std::nullopt;
    } else {
      run = 0;
    }
  }
  if (s.find('\\') == std::string::npos) return std::nullopt;  // plain text is left to the number rule
  return s;
}

}  // namespace

std::optional<std::string> first_number(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && !std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  if (i == t.size()) return std::nullopt;
  size_t s = i;
  if (s > 0 && t[s - 1] == '-') --s;
  size_t e = i;
  while (e < t.size() && (std::isdigit(static_cast<unsigned char>(t[e])) ||
                          ((t[e] == ',' || t[e] == '.' || t[e] == '/') && e + 1 < t.size() &&
                           std::isdigit(static_cast<unsigned char>(t[e + 1])))))
    ++e;
  std::string out(t.substr(s, e - s));
  size_t after = e;
  while (after < t.size() && t[after] == ' ') ++after;
  if (after < t.size() && t[after] == '%') out += "%";
  return out;
}

std::optional<Extracted> extract_answer(std::string_view text, bool require_anchor) {
  // R1-Zero answer tags win: the model was asked to put its answer there.
  {
    std::string l = lower(text);
    size_t open = l.rfind("<answer>");
    if (open != std::string::npos) {
      size_t s = open + 8;
      size_t close = l.find("</answer>", s);
      std::string inner = trim(text.substr(s, (close == std::string::npos ? text.size() : close) - s));
      if (!inner.empty()) {
        if (auto b = boxed_answer(inner)) return Extracted{*b, "answer_tag"};
        for (const char* ph : {"final answer is", "the answer is", "answer:"})
          if (auto seg = after_phrase(inner, ph)) return Extracted{refine_segment(*seg), "answer_tag"};
        return Extracted{refine_segment(inner), "answer_tag"};
      }
    }
  }
  if (auto b = boxed_answer(text)) return Extracted{*b, "boxed"};
  for (const char* ph : {"final answer is", "the answer is", "answer is", "answer:"})
    if (auto seg = after_phrase(text, ph)) return Extracted{refine_segment(*seg), "answer_is"};
  {
    size_t p = text.rfind("####");
    if (p != std::string_view::npos) {
      size_t e = text.find('\n', p);
      std::string seg = trim(text.substr(p + 4, (e == std::string_view::npos ? text.size() : e) - p - 4));
      if (!seg.empty()) return Extracted{seg, "gsm8k"};
    }
  }
  if (require_anchor) return std::nullopt;
  if (auto m = last_math_span(text)) return Extracted{*m, "latex"};
  if (auto w = whole_answer(text)) return Extracted{*w, "whole"};
  if (auto n = last_number(text)) return Extracted{*n, "number"};
  return std::nullopt;
}

std::string gold_answer(std::string_view ref) {
  size_t p = ref.rfind("####");
  if (p != std::string_view::npos) {
    size_t e = ref.find('\n', p);
    return trim(ref.substr(p + 4, (e == std::string_view::npos ? ref.size() : e) - p - 4));
  }
  if (auto b = boxed_answer(ref)) return *b;
  return trim(ref);
}

}  // namespace r1::rewards::math
