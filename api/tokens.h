#pragma once

// Bearer tokens: the text format, and the authority that issues, checks and revokes them.
// The REST router and the worker gateway call TokenAuthority::Authenticate on every request.
//
// A token topotune issues reads tt<ID>.<SECRET>: ID is the decimal row id of its record, SECRET
// 64 lowercase hex characters (256 random bits). An operator may also provide an admin secret
// of their own (topotuned --admin-token-file): any 32 to 256 visible ASCII characters, stored
// as an "external" token. Only SHA-256 digests are stored: of SECRET, or of a whole external
// text. Role, RoleName, ParseRole and TokenRecord are in tuner/types.h.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

class Store;

// The ID and SECRET of a token text tt<ID>.<SECRET>; InvalidArgument for any other text
// (leading zeros or a zero ID, upper-case hex, a wrong length, anything around it). The
// message never repeats the text.
StatusOr<std::pair<int64_t, std::string>> ParseTokenText(const std::string& text);

// Whether `a` equals `b`, in time that depends on their lengths only (no early exit).
bool ConstantTimeEquals(const std::string& a, const std::string& b);

// Who made a request: the token it carried.
struct Principal {
  int64_t token_id = 0;
  std::string name;
  Role role = Role::kUser;
};

// A token just created: its stored record and its text, which nothing stores.
struct IssuedToken {
  TokenRecord record;
  std::string text;  ///< tt<ID>.<SECRET>; show it once
};

// Issues, checks and revokes tokens kept in a Store. Thread-safe: `touch_mutex_` guards the
// last-use times, `admin_mutex_` serialises EnsureAdmin. Revocation takes effect on the next
// Authenticate: nothing is cached but when each token was last marked used.
class TokenAuthority {
 public:
  // Marks a token used (Store::TouchToken) at most this often.
  static constexpr double kTouchIntervalSeconds = 60.0;
  // An operator-provided admin text: this many visible ASCII characters (0x21..0x7e).
  static constexpr size_t kMinExternalLength = 32;
  static constexpr size_t kMaxExternalLength = 256;

  using IssuedToken = ::topotune::IssuedToken;  // either spelling names the same struct

  // `store` is not owned and must outlive the authority. `clock` returns seconds since the
  // Unix epoch for last-use times; null = the system clock.
  explicit TokenAuthority(Store* store, std::function<double()> clock = nullptr);
  TokenAuthority(const TokenAuthority&) = delete;
  TokenAuthority& operator=(const TokenAuthority&) = delete;

  // The principal of an active token. Unauthenticated when the text is empty, malformed,
  // unknown, revoked or has the wrong secret ("invalid or revoked token" for the last three);
  // IOError when the database fails. Records the use at most once a minute per token.
  StatusOr<Principal> Authenticate(const std::string& token_text);

  // Issues a token of `role`. `name`: 0 to 64 characters of A-Z a-z 0-9 . _ - (empty = the
  // role's name); InvalidArgument otherwise. IOError when no randomness or no database.
  StatusOr<IssuedToken> Create(Role role, const std::string& name, double now);

  // Every token, revoked ones too, by id.
  StatusOr<std::vector<TokenRecord>> List();

  // Revokes token `id` at `now`: NotFound if there is none, FailedPrecondition if it already
  // is revoked.
  Status Revoke(int64_t id, double now);

  // Makes sure the database has an admin token, at the controller's start.
  // - `provided_text` non-empty (the operator's own secret): stores it as an external admin
  //   token unless it is stored already, so changing the file adds an admin; returns nullopt.
  //   InvalidArgument unless it is 32 to 256 visible ASCII characters, or when it has the
  //   form tt<ID>.<SECRET> but is not an active admin token of this database;
  //   FailedPrecondition when it was stored and has been revoked.
  // - `provided_text` empty: when no admin token is active, creates one and returns its
  //   text for the caller to show once; otherwise nullopt.
  StatusOr<std::optional<std::string>> EnsureAdmin(const std::string& provided_text, double now);

 private:
  // The active token `token_text` names; Unauthenticated or IOError as Authenticate says.
  StatusOr<TokenRecord> FindActiveToken(const std::string& token_text);
  // Stores TouchToken(token, clock) unless the token was marked used within the interval.
  void NoteUse(const TokenRecord& token);

  Store* const store_;
  const std::function<double()> clock_;
  std::mutex admin_mutex_;
  std::mutex touch_mutex_;
  std::unordered_map<int64_t, double> last_touched_;  // GUARDED_BY(touch_mutex_)
};

}  // namespace topotune
