#include "mail/internal/mime.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace otd::mail::internal {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";
constexpr size_t kQpLineMax = 76;
constexpr size_t kHeaderLineMax = 78;

bool HasCrOrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool IsLineBreakAt(std::string_view in, size_t i) { return in[i] == '\r' || in[i] == '\n'; }

// Length in bytes of the UTF-8 sequence starting with `lead` (valid input assumed), 1 otherwise.
size_t Utf8SeqLen(unsigned char lead) {
  if (lead >= 0xF0) {
    return 4;
  }
  if (lead >= 0xE0) {
    return 3;
  }
  if (lead >= 0xC0) {
    return 2;
  }
  return 1;
}

std::string Base64(std::string_view in) {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                 (uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t v = uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (rest == 2) {
      v |= uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    }
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += rest == 2 ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void AppendPart(std::string& out, std::string_view content_type, std::string_view body) {
  out += "Content-Type: ";
  out += content_type;
  out += "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n";
  out += EncodeQuotedPrintable(body);  // the CRLF that ends it belongs to what follows
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) {
      return false;
    }
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n;
  }
  return true;
}

Status ValidateAddress(std::string_view what, std::string_view address) {
  std::string field(what);
  if (HasCrOrLf(address)) {
    return InvalidArgument(field + " contains CR or LF");
  }
  if (address.empty() || address.size() > kMaxAddressBytes) {
    return InvalidArgument(field + " is empty or longer than 254 bytes");
  }
  size_t at = address.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size() ||
      address.find('@', at + 1) != std::string_view::npos) {
    return InvalidArgument(field + " is not a bare address (local@domain)");
  }
  constexpr std::string_view kSpecials = "<>()[],;:\"\\";
  for (char ch : address) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F || kSpecials.find(ch) != std::string_view::npos) {
      return InvalidArgument(field + " is not a bare address (local@domain)");
    }
  }
  return Status::Ok();
}

Status ValidateMessage(const Message& m) {
  OTD_RETURN_IF_ERROR(ValidateAddress("recipient", m.to));
  if (HasCrOrLf(m.subject)) {
    return InvalidArgument("subject contains CR or LF");
  }
  if (m.subject.size() > kMaxSubjectBytes) {
    return InvalidArgument("subject is longer than 998 bytes");
  }
  if (m.text.size() > kMaxBodyBytes || m.html.size() > kMaxBodyBytes) {
    return InvalidArgument("message body is larger than 1 MiB");
  }
  if (!IsValidUtf8(m.subject) || !IsValidUtf8(m.text) || !IsValidUtf8(m.html)) {
    return InvalidArgument("message is not valid UTF-8");
  }
  return Status::Ok();
}

std::string EncodeQuotedPrintable(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 8 + 16);
  size_t line_len = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') {
        ++i;
      }
      out += "\r\n";
      line_len = 0;
      continue;
    }
    bool at_line_end = i + 1 == in.size() || IsLineBreakAt(in, i + 1);
    bool literal = (c == ' ' || c == '\t') ? !at_line_end : (c >= 33 && c <= 126 && c != '=');
    size_t width = literal ? 1 : 3;
    // Soft break if the line would exceed 76 characters including the soft break's `=`.
    if (line_len + width > kQpLineMax - 1) {
      out += "=\r\n";
      line_len = 0;
    }
    if (c == '.' && line_len == 0) {
      literal = false;  // a lone "." line would end an SMTP DATA section read naively
      width = 3;
    }
    if (literal) {
      out += static_cast<char>(c);
    } else {
      out += '=';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    line_len += width;
  }
  return out;
}

std::string EncodeHeaderText(std::string_view value, size_t name_len) {
  bool plain =
      name_len + value.size() <= kHeaderLineMax && value.find("=?") == std::string_view::npos;
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7F) {
      plain = false;
    }
  }
  if (plain) {
    return std::string(value);
  }
  // "=?utf-8?B?" + base64 + "?=" <= 75 characters: at most 60 base64 characters, 45 bytes.
  constexpr size_t kMaxChunk = 45;
  std::string out;
  size_t i = 0;
  do {
    size_t end = i;
    while (end < value.size()) {
      size_t n = Utf8SeqLen(static_cast<unsigned char>(value[end]));
      if (end + n - i > kMaxChunk) {
        break;
      }
      end += n;
    }
    if (end == i) {
      end = std::min(value.size(), i + 1);  // cannot happen with valid UTF-8
    }
    if (!out.empty()) {
      out += "\r\n ";
    }
    out += "=?utf-8?B?";
    out += Base64(value.substr(i, end - i));
    out += "?=";
    i = end;
  } while (i < value.size());
  return out;
}

std::string FormatDate(int64_t unix_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  (void)std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000",
                      kDays[tm.tm_wday % 7], tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900,
                      tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string RenderMessage(const Message& m, const RenderParams& p) {
  std::string domain = p.from.substr(p.from.find('@') + 1);
  std::string out;
  out.reserve(1024 + m.text.size() * 2 + m.html.size() * 2);
  out += "From: " + p.from + "\r\n";
  out += "To: " + m.to + "\r\n";
  out += "Subject: " + EncodeHeaderText(m.subject, 9) + "\r\n";
  out += "Date: " + FormatDate(p.date) + "\r\n";
  out += "Message-ID: <" + p.message_id + "@" + domain + ">\r\n";
  out += "MIME-Version: 1.0\r\n";
  if (m.html.empty()) {
    AppendPart(out, "text/plain", m.text);
    if (!out.ends_with("\r\n")) {
      out += "\r\n";  // SMTP needs the last line ended
    }
    return out;
  }
  out += "Content-Type: multipart/alternative;\r\n boundary=\"" + p.boundary + "\"\r\n";
  out += "\r\n";
  out += "This is a multi-part message in MIME format.\r\n";
  out += "\r\n--" + p.boundary + "\r\n";
  AppendPart(out, "text/plain", m.text);
  out += "\r\n--" + p.boundary + "\r\n";
  AppendPart(out, "text/html", m.html);
  out += "\r\n--" + p.boundary + "--\r\n";
  return out;
}

std::optional<std::string> ReadRecipient(std::string_view rendered) {
  size_t pos = 0;
  while (pos < rendered.size()) {
    size_t eol = rendered.find("\r\n", pos);
    if (eol == std::string_view::npos || eol == pos) {
      return std::nullopt;  // end of the header block without a To: header
    }
    std::string_view line = rendered.substr(pos, eol - pos);
    if (line.size() > 3 && (line[0] == 'T' || line[0] == 't') &&
        (line[1] == 'O' || line[1] == 'o') && line[2] == ':') {
      std::string_view value = line.substr(3);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
      }
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
      }
      // A folded To: header (continuation line) is not something this module writes.
      if (eol + 2 < rendered.size() && (rendered[eol + 2] == ' ' || rendered[eol + 2] == '\t')) {
        return std::nullopt;
      }
      if (!ValidateAddress("recipient", value).ok()) {
        return std::nullopt;
      }
      return std::string(value);
    }
    pos = eol + 2;
  }
  return std::nullopt;
}

}  // namespace otd::mail::internal
