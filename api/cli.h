#pragma once

namespace topotune {

// The topotune command line client:
//   topotune [--server URL] submit FILE [--watch]
//   topotune [--server URL] list | workers
//   topotune [--server URL] status ID [--watch]
//   topotune [--server URL] report ID [--json]
//   topotune report ID --db FILE [--json]     (from the database file, no server)
//   topotune [--server URL] cancel ID
// The server defaults to $TOPOTUNE_SERVER, else http://127.0.0.1:7700. Returns the exit
// code: 0 ok, 1 the request failed, 2 bad usage.
int RunCli(int argc, char** argv);

}  // namespace topotune
