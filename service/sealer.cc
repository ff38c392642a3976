#include "service/sealer.h"

#include "crypto/random.h"
#include "service/record.h"

namespace otd::service {

namespace {

// The session key of a KEK-wrapped data key (unwrapped in the token, cached there).
Result<hsm::KeyRef> Unwrap(hsm::Session& s, uint32_t kek_version, const Bytes& wrapped) {
  return FromToken(s.UnwrapCached(hsm::KeyRef::Persistent(KekLabel(kek_version)), wrapped,
                                  hsm::KeyType::kAes256, hsm::KeyUsage::kEncrypt));
}

}  // namespace

Result<Sealed> Sealer::SealDeferred(std::string_view table, std::string_view account,
                                    std::string_view id, ByteView plaintext,
                                    const KeyHierarchy::ReadAhead* ahead) {
  OTD_ASSIGN_OR_RETURN(Reservation r, budget_.Reserve(account));
  SealedRecord rec;
  rec.key_version = r.version;
  OTD_RETURN_IF_ERROR(crypto::RandomBytes(rec.nonce));
  Bytes aad = SealedAssociatedData(table, account, id, rec.key_version);
  // The wrapped key first: finding it may take a token session of its own.
  uint32_t kek_version = 0;
  OTD_ASSIGN_OR_RETURN(Bytes wrapped,
                       keys_.LoadWrappedDataKey(account, r.version, &kek_version, ahead));
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(hsm::KeyRef dk, Unwrap(s, kek_version, wrapped));
  OTD_ASSIGN_OR_RETURN(rec.ciphertext_and_tag,
                       FromToken(s.EncryptGcm(dk, rec.nonce, aad, plaintext)));
  return Sealed{EncodeSealed(rec), std::move(r.gate)};
}

Result<Bytes> Sealer::Seal(std::string_view table, std::string_view account, std::string_view id,
                           ByteView plaintext) {
  OTD_ASSIGN_OR_RETURN(Sealed sealed, SealDeferred(table, account, id, plaintext));
  if (sealed.gate) {
    OTD_RETURN_IF_ERROR(sealed.gate->Wait());
  }
  return std::move(sealed.bytes);
}

Result<SecretBytes> Sealer::Open(std::string_view table, std::string_view account,
                                 std::string_view id, ByteView record,
                                 const KeyHierarchy::ReadAhead* ahead) {
  OTD_ASSIGN_OR_RETURN(SealedRecord rec, DecodeSealed(record));
  Bytes aad = SealedAssociatedData(table, account, id, rec.key_version);
  uint32_t kek_version = 0;
  OTD_ASSIGN_OR_RETURN(Bytes wrapped,
                       keys_.LoadWrappedDataKey(account, rec.key_version, &kek_version, ahead));
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(hsm::KeyRef dk, Unwrap(s, kek_version, wrapped));
  return FromToken(s.DecryptGcm(dk, rec.nonce, aad, rec.ciphertext_and_tag));
}

}  // namespace otd::service
