#include "api/tokens.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <random>

#include "storage/store.h"
#include "tuner/sha256.h"

namespace topotune {
namespace {

constexpr char kTokenPrefix[] = "tt";
constexpr size_t kMaxIdDigits = 18;  // ids stay far below 10^18
constexpr size_t kSecretHexChars = 64;
constexpr size_t kSecretBytes = kSecretHexChars / 2;
constexpr size_t kMaxTokenTextLength = 2 + kMaxIdDigits + 1 + kSecretHexChars;
constexpr size_t kMaxNameLength = 64;
constexpr char kInvalidOrRevoked[] = "invalid or revoked token";

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// Whether `text` may be an operator-provided admin token; the message says why not,
// without repeating the text.
Status CheckExternalText(const std::string& text) {
  if (text.size() < TokenAuthority::kMinExternalLength ||
      text.size() > TokenAuthority::kMaxExternalLength) {
    return Status::InvalidArgument("a provided admin token must be " +
                                   std::to_string(TokenAuthority::kMinExternalLength) + " to " +
                                   std::to_string(TokenAuthority::kMaxExternalLength) +
                                   " characters, got " + std::to_string(text.size()));
  }
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] < 0x21 || text[i] > 0x7e) {
      return Status::InvalidArgument(
          "a provided admin token must be visible ASCII characters (no spaces or control "
          "characters); character " +
          std::to_string(i + 1) + " is not");
    }
  }
  return Status::OK();
}

// 256 bits from the kernel, as 64 lowercase hex characters. The token names
// /dev/urandom: libstdc++'s default random_device would use RDRAND/RDSEED where the CPU
// has them, not the kernel's pool.
StatusOr<std::string> RandomSecretHex() {
  static const char kHexDigits[] = "0123456789abcdef";
  try {
    std::random_device device("/dev/urandom");
    std::string hex;
    hex.reserve(kSecretHexChars);
    for (size_t word = 0; word < kSecretBytes / 4; ++word) {
      const uint32_t bits = static_cast<uint32_t>(device());
      for (int shift = 28; shift >= 0; shift -= 4) hex.push_back(kHexDigits[(bits >> shift) & 0xf]);
    }
    return hex;
  } catch (const std::exception& e) {
    return Status::IOError(std::string("reading /dev/urandom for a token secret: ") + e.what());
  }
}

double SystemClockSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

StatusOr<std::pair<int64_t, std::string>> ParseTokenText(const std::string& text) {
  const std::string expected = "a token must read tt<ID>.<SECRET>";
  if (text.size() > kMaxTokenTextLength) {
    return Status::InvalidArgument(expected + ": it has " + std::to_string(text.size()) +
                                   " characters, at most " + std::to_string(kMaxTokenTextLength) +
                                   " are allowed");
  }
  if (text.compare(0, 2, kTokenPrefix) != 0) {
    return Status::InvalidArgument(expected + ": it does not start with 'tt'");
  }
  const size_t dot = text.find('.', 2);
  if (dot == std::string::npos) return Status::InvalidArgument(expected + ": there is no '.'");
  const size_t id_digits = dot - 2;
  if (id_digits == 0 || id_digits > kMaxIdDigits || text[2] == '0') {
    return Status::InvalidArgument(expected + ": ID must be a positive decimal number of at most " +
                                   std::to_string(kMaxIdDigits) + " digits without leading zeros");
  }
  int64_t id = 0;
  for (size_t i = 2; i < dot; ++i) {
    if (text[i] < '0' || text[i] > '9') {
      return Status::InvalidArgument(expected + ": ID must be a decimal number");
    }
    id = id * 10 + (text[i] - '0');
  }
  std::string secret = text.substr(dot + 1);
  if (secret.size() != kSecretHexChars || !std::all_of(secret.begin(), secret.end(), IsLowerHex)) {
    return Status::InvalidArgument(expected + ": SECRET must be " +
                                   std::to_string(kSecretHexChars) +
                                   " lowercase hexadecimal characters");
  }
  return std::make_pair(id, std::move(secret));
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  // volatile keeps the compiler from turning the loop into one that stops at a difference.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

TokenAuthority::TokenAuthority(Store* store, std::function<double()> clock)
    : store_(store), clock_(clock ? std::move(clock) : SystemClockSeconds) {}

StatusOr<Principal> TokenAuthority::Authenticate(const std::string& token_text) {
  StatusOr<TokenRecord> token = FindActiveToken(token_text);
  if (!token.ok()) return token.status();
  NoteUse(*token);
  return Principal{token->id, token->name, token->role};
}

StatusOr<TokenRecord> TokenAuthority::FindActiveToken(const std::string& token_text) {
  if (token_text.empty()) return Status::Unauthenticated("missing bearer token");
  StatusOr<std::pair<int64_t, std::string>> parsed = ParseTokenText(token_text);
  if (parsed.ok()) {
    // Hash before the lookup, so an unknown id costs as much as a wrong secret.
    const std::string hash = Sha256Hex(parsed->second);
    StatusOr<TokenRecord> token = store_->GetToken(parsed->first);
    if (!token.ok()) {
      if (token.status().code() == Status::Code::kNotFound) {
        return Status::Unauthenticated(kInvalidOrRevoked);
      }
      return token.status();
    }
    // An external token matches its whole text only, never tt<ID>.<SECRET>.
    const bool matches = ConstantTimeEquals(hash, token->hash_hex);
    if (!matches || token->external || !token->active()) {
      return Status::Unauthenticated(kInvalidOrRevoked);
    }
    return token;
  }
  if (!CheckExternalText(token_text).ok()) {
    return Status::Unauthenticated(
        "malformed bearer token: expected tt<ID>.<SECRET> or the operator's admin token");
  }
  const std::string hash = Sha256Hex(token_text);
  StatusOr<std::vector<TokenRecord>> candidates = store_->FindExternalTokens(hash);
  if (!candidates.ok()) return candidates.status();
  for (TokenRecord& token : *candidates) {
    if (ConstantTimeEquals(hash, token.hash_hex) && token.external && token.role == Role::kAdmin &&
        token.active()) {
      return std::move(token);
    }
  }
  return Status::Unauthenticated(kInvalidOrRevoked);
}

StatusOr<IssuedToken> TokenAuthority::Create(Role role, const std::string& name, double now) {
  if (name.size() > kMaxNameLength) {
    return Status::InvalidArgument("token name must be at most " + std::to_string(kMaxNameLength) +
                                   " characters, got " + std::to_string(name.size()));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i])) {
      return Status::InvalidArgument("token name may contain only A-Z a-z 0-9 . _ -; character " +
                                     std::to_string(i + 1) + " of '" + name + "' is not allowed");
    }
  }
  StatusOr<std::string> secret = RandomSecretHex();
  if (!secret.ok()) return secret.status();
  IssuedToken issued;
  issued.record.name = name.empty() ? RoleName(role) : name;
  issued.record.role = role;
  issued.record.hash_hex = Sha256Hex(*secret);
  issued.record.created_at = now;
  StatusOr<int64_t> id = store_->CreateToken(issued.record);
  if (!id.ok()) return id.status();
  issued.record.id = *id;
  issued.text = kTokenPrefix + std::to_string(*id) + "." + *secret;
  return issued;
}

StatusOr<std::vector<TokenRecord>> TokenAuthority::List() { return store_->ListTokens(); }

Status TokenAuthority::Revoke(int64_t id, double now) { return store_->RevokeToken(id, now); }

StatusOr<std::optional<std::string>> TokenAuthority::EnsureAdmin(const std::string& provided_text,
                                                                 double now) {
  std::lock_guard<std::mutex> lock(admin_mutex_);
  const std::optional<std::string> nothing_to_show;
  if (!provided_text.empty()) {
    if (ParseTokenText(provided_text).ok()) {
      // A token topotune issued (say, the admin token printed at the first start, saved to
      // the file): fine if it is an active admin token here, never stored a second time.
      StatusOr<TokenRecord> token = FindActiveToken(provided_text);
      if (token.ok() && token->role == Role::kAdmin) return nothing_to_show;
      if (!token.ok() && token.status().code() != Status::Code::kUnauthenticated) {
        return token.status();
      }
      return Status::InvalidArgument(
          "the provided admin token has the form tt<ID>.<SECRET> of a token topotune issues, "
          "but it is not an active admin token of this database; provide a secret of your own "
          "(" +
          std::to_string(kMinExternalLength) + " to " + std::to_string(kMaxExternalLength) +
          " visible ASCII characters) or none");
    }
    TOPOTUNE_RETURN_IF_ERROR(CheckExternalText(provided_text));
    const std::string hash = Sha256Hex(provided_text);
    StatusOr<std::vector<TokenRecord>> stored = store_->FindExternalTokens(hash);
    if (!stored.ok()) return stored.status();
    for (const TokenRecord& token : *stored) {
      if (!ConstantTimeEquals(hash, token.hash_hex) || token.role != Role::kAdmin) continue;
      if (token.active()) return nothing_to_show;
      return Status::FailedPrecondition("the provided admin token was revoked (token " +
                                        std::to_string(token.id) + "); provide a new one");
    }
    TokenRecord record;
    record.name = RoleName(Role::kAdmin);
    record.role = Role::kAdmin;
    record.hash_hex = hash;
    record.external = true;
    record.created_at = now;
    StatusOr<int64_t> id = store_->CreateToken(record);
    if (!id.ok()) return id.status();
    return nothing_to_show;
  }

  StatusOr<std::vector<TokenRecord>> tokens = store_->ListTokens();
  if (!tokens.ok()) return tokens.status();
  for (const TokenRecord& token : *tokens) {
    if (token.role == Role::kAdmin && token.active()) return nothing_to_show;
  }
  StatusOr<IssuedToken> issued = Create(Role::kAdmin, "", now);
  if (!issued.ok()) return issued.status();
  return std::optional<std::string>(std::move(issued->text));
}

void TokenAuthority::NoteUse(const TokenRecord& token) {
  const double now = clock_();
  {
    std::lock_guard<std::mutex> lock(touch_mutex_);
    double& last = last_touched_[token.id];
    last = std::max(last, token.last_used_at);
    if (now - last < kTouchIntervalSeconds) return;
    last = now;
  }
  // Best effort: a request is not refused because its use could not be recorded, but the
  // operator hears of it (at most once per token per kTouchIntervalSeconds).
  Status touched = store_->TouchToken(token.id, now);
  if (!touched.ok()) {
    std::fprintf(stderr, "topotuned: could not record the use of token %lld: %s\n",
                 static_cast<long long>(token.id), touched.ToString().c_str());
  }
}

}  // namespace topotune
