#include "app/zk_security.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

namespace drover::app {

std::string digestId(const std::string& credential) {
  unsigned char sha[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(credential.data()), credential.size(), sha);
  unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  EVP_EncodeBlock(b64, sha, SHA_DIGEST_LENGTH);
  return credential.substr(0, credential.find(':')) + ":" + reinterpret_cast<const char*>(b64);
}

std::string checkTreeAcl(coord::ZkCoordination& zk, const std::vector<std::string>& paths,
                         const std::string& credential) {
  const std::string id = credential.empty() ? "" : digestId(credential);
  const std::string user = credential.substr(0, credential.find(':'));
  std::vector<coord::Future<coord::Acl>> pending;
  pending.reserve(paths.size());
  for (const auto& p : paths) pending.push_back(zk.getAcl(p));
  for (size_t i = 0; i < paths.size(); ++i) {
    auto acl = pending[i].get();
    // ZooKeeper shows an ACL only to a client with READ or ADMIN rights on the node: a refusal
    // means the node is protected, and not for this client.
    bool refused = !acl && acl.error().code() == coord::Code::kNoAuth;
    if (!acl && !refused) {
      return fmt::format("cannot read the ACL of {}: {}", paths[i], acl.error().toString());
    }
    bool world = false, ours = false;
    for (const auto& e : refused ? coord::Acl{} : *acl) {
      if (e.scheme == "world" && e.id == "anyone") world = true;
      if (e.scheme == "digest" && e.id == id) ours = true;
    }
    if (credential.empty() && !world) {
      return fmt::format(
          "the znode tree is protected by ZooKeeper ACLs ({} is not open to all): give this node "
          "the cluster's digest credentials (zk_auth or zk_auth_file)",
          paths[i]);
    }
    if (!credential.empty() && (world || !ours)) {
      return fmt::format(
          "{} is {} (the tree was made {}); a half-protected tree is refused: protect it (e.g. "
          "zkCli.sh: addauth digest {}:... then setAcl -R {} auth::cdrwa) or use a new zk_root "
          "(docs/SECURITY.md)",
          paths[i], world ? "open to all clients" : "protected for another identity",
          world ? "without credentials" : "with other credentials", user, paths.front());
    }
  }
  return "";
}

}  // namespace drover::app
