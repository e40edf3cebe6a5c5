#pragma once

namespace topotune {

// The topotune command line client (OPTIONS: [--server URL] [--token-file FILE]):
//   topotune OPTIONS submit FILE [--watch]
//   topotune OPTIONS list | workers
//   topotune OPTIONS status ID [--watch]
//   topotune OPTIONS report ID [--json]
//   topotune report ID --db FILE [--json]     (from the database file, no server)
//   topotune OPTIONS cancel ID
//   topotune OPTIONS token create --role admin|user|worker [--name NAME]
//   topotune OPTIONS token list [--json]
//   topotune OPTIONS token revoke ID
// The server defaults to $TOPOTUNE_SERVER, else http://127.0.0.1:7700. Every request carries
// "Authorization: Bearer TOKEN", TOKEN the first line of --token-file (trimmed), else
// $TOPOTUNE_TOKEN. token create prints the new token's text alone on stdout, its only
// showing. Returns the exit code: 0 ok, 1 the request failed, 2 bad usage.
int RunCli(int argc, char** argv);

}  // namespace topotune
