//! Known-answer tests for the post-quantum primitives DWCP relies on, and
//! cross-checks between the two implementations we link (RustCrypto and
//! aws-lc-rs).
//!
//! The vectors are data, not ours to commit: they are read in place from the
//! shared folder `DWCP_VECTORS_DIR`, or `../shared/vectors` beside the
//! checkout. Per its `SOURCES.md`:
//!
//! - `ml-kem/`, `ml-dsa/`, `slh-dsa/`: NIST ACVP-Server internal projections
//!   for FIPS 203, 204 and 205 (as kept in RustCrypto's KEMs and signatures
//!   repositories). They hold every parameter set; we pick ML-KEM-768,
//!   ML-DSA-65 and SLH-DSA-SHAKE-192s.
//! - `x-wing/`: the X-Wing draft's `spec/test-vectors.json`.
//!
//! When a file is missing, its test prints `SKIPPED: …` and passes. When it is
//! present, every test counts the cases it ran and asserts there was at least
//! one, so that a wrong filter cannot pass silently.
//!
//! Beyond the libraries, the tests show that our own types are the real thing:
//! `seal::SealingKey` is X-Wing, `root::RootSigningKey` is SLH-DSA-SHAKE-192s.
//! The cross-checks (ML-DSA-65 and ML-KEM-768 between both crates, Ed25519 from
//! RFC 8032 section 7.1) need no files and always run.

use std::path::PathBuf;

use aws_lc_rs::encoding::AsRawBytes;
use aws_lc_rs::signature::{
    ED25519, Ed25519KeyPair, KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair, UnparsedPublicKey,
};
use dwcp_crypto::composite::HybridSigningKey;
use dwcp_crypto::root::{RootPublicKey, RootSigningKey};
use dwcp_crypto::seal::SealingKey;
use ml_dsa::{EncodedVerifyingKey, ExpandedSigningKeyBytes, MlDsa65};
#[allow(deprecated)] // the ACVP files give the expanded (legacy) key encoding
use ml_kem::ExpandedKeyEncoding;
use ml_kem::{Decapsulate, KeyExport, ml_kem_768};
use serde_json::Value;
use slh_dsa::Shake192s;
use x_wing::Decapsulator;

/// Reads `relative` from the vectors folder, or says why the test is skipped.
fn load(relative: &str) -> Option<Value> {
    let dir = std::env::var_os("DWCP_VECTORS_DIR").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        },
        PathBuf::from,
    );
    let path = dir.join(relative);
    if !path.is_file() {
        eprintln!(
            "SKIPPED: vectors not found at {} (set DWCP_VECTORS_DIR)",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path).expect("read vectors");
    Some(serde_json::from_str(&text).expect("vectors are JSON"))
}

/// The bytes of a hex field.
fn hex(value: &Value, field: &str) -> Vec<u8> {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field} is not a string"));
    hex::decode(text).unwrap_or_else(|e| panic!("field {field}: {e}"))
}

/// The ACVP test groups for one parameter set.
fn groups<'a>(doc: &'a Value, parameter_set: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    doc["testGroups"]
        .as_array()
        .expect("testGroups")
        .iter()
        .filter(move |g| g["parameterSet"] == parameter_set)
}

/// The tests of one ACVP group.
fn tests(group: &Value) -> &[Value] {
    group["tests"].as_array().expect("tests")
}

/// A group field that is absent, or equal to `expected`.
fn absent_or(group: &Value, field: &str, expected: &str) -> bool {
    group.get(field).is_none_or(|v| v == expected)
}

fn report(what: &str, ran: usize) {
    eprintln!("{what}: {ran} cases");
    assert!(ran > 0, "{what}: no case ran (wrong filter?)");
}

#[test]
fn ml_kem_768_keygen_from_seed_matches_acvp() {
    let Some(doc) = load("ml-kem/key-gen.json") else {
        return;
    };
    let mut ran = 0;
    for case in groups(&doc, "ML-KEM-768").flat_map(tests) {
        let seed = [hex(case, "d"), hex(case, "z")].concat();
        let dk = ml_kem_768::DecapsulationKey::from_seed(seed.as_slice().try_into().unwrap());
        assert_eq!(
            dk.encapsulation_key().to_bytes().as_slice(),
            hex(case, "ek")
        );
        #[allow(deprecated)]
        let expanded = dk.to_expanded_bytes();
        assert_eq!(
            expanded.as_slice(),
            hex(case, "dk"),
            "tcId {}",
            case["tcId"]
        );
        ran += 1;
    }
    report("ML-KEM-768 keyGen", ran);
}

#[test]
fn ml_kem_768_deterministic_encapsulation_matches_acvp() {
    let Some(doc) = load("ml-kem/encap-decap.json") else {
        return;
    };
    let mut ran = 0;
    for group in groups(&doc, "ML-KEM-768").filter(|g| g["function"] == "encapsulation") {
        for case in tests(group) {
            let ek =
                ml_kem_768::EncapsulationKey::new(hex(case, "ek").as_slice().try_into().unwrap())
                    .unwrap();
            let (c, k) =
                ek.encapsulate_deterministic(hex(case, "m").as_slice().try_into().unwrap());
            assert_eq!(c.as_slice(), hex(case, "c"), "tcId {}", case["tcId"]);
            assert_eq!(k.as_slice(), hex(case, "k"), "tcId {}", case["tcId"]);
            ran += 1;
        }
    }
    report("ML-KEM-768 encapsulation", ran);
}

/// Includes modified ciphertexts, whose answer is the implicit-rejection key.
#[test]
fn ml_kem_768_decapsulation_matches_acvp_in_rustcrypto_and_aws_lc() {
    let Some(doc) = load("ml-kem/encap-decap.json") else {
        return;
    };
    let (mut ran, mut rejected) = (0, 0);
    for group in groups(&doc, "ML-KEM-768").filter(|g| g["function"] == "decapsulation") {
        let dk_bytes = hex(group, "dk");
        #[allow(deprecated)]
        let rust = ml_kem_768::DecapsulationKey::from_expanded_bytes(
            dk_bytes.as_slice().try_into().unwrap(),
        )
        .unwrap();
        let aws =
            aws_lc_rs::kem::DecapsulationKey::new(&aws_lc_rs::kem::ML_KEM_768, &dk_bytes).unwrap();
        for case in tests(group) {
            let (c, k) = (hex(case, "c"), hex(case, "k"));
            let id = &case["tcId"];
            assert_eq!(
                rust.decapsulate_slice(&c).unwrap().as_slice(),
                k,
                "tcId {id}"
            );
            let shared = aws.decapsulate(c.as_slice().into()).unwrap();
            assert_eq!(shared.as_ref(), k, "tcId {id} (aws-lc-rs)");
            ran += 1;
            rejected += usize::from(case["reason"] != "no modification");
        }
    }
    report("ML-KEM-768 decapsulation", ran);
    assert!(rejected > 0, "no implicit-rejection case ran");
}

#[test]
fn ml_dsa_65_keygen_matches_acvp_in_rustcrypto_and_aws_lc() {
    let Some(doc) = load("ml-dsa/key-gen.json") else {
        return;
    };
    let mut ran = 0;
    for case in groups(&doc, "ML-DSA-65").flat_map(tests) {
        let (seed, pk, sk) = (hex(case, "seed"), hex(case, "pk"), hex(case, "sk"));
        let id = &case["tcId"];
        let key = ml_dsa::SigningKey::<MlDsa65>::from_seed(seed.as_slice().try_into().unwrap());
        let expanded = key.expanded_key();
        assert_eq!(
            expanded.verifying_key().encode().as_slice(),
            pk,
            "tcId {id}"
        );
        #[allow(deprecated)]
        let sk_bytes = expanded.to_expanded();
        assert_eq!(sk_bytes.as_slice(), sk, "tcId {id}");

        let aws = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seed).unwrap();
        assert_eq!(aws.public_key().as_ref(), pk, "tcId {id} (aws-lc-rs)");
        let aws_sk = aws.private_key().as_raw_bytes().unwrap();
        assert_eq!(aws_sk.as_ref(), sk, "tcId {id} (aws-lc-rs)");
        ran += 1;
    }
    report("ML-DSA-65 keyGen", ran);
}

#[test]
fn ml_dsa_65_internal_signing_matches_acvp() {
    let Some(doc) = load("ml-dsa/sig-gen.json") else {
        return;
    };
    let (mut ran, mut skipped) = (0, 0);
    for group in groups(&doc, "ML-DSA-65") {
        // Newer ACVP files also hold external, pre-hash and external-mu groups.
        let internal = absent_or(group, "signatureInterface", "internal")
            && absent_or(group, "preHash", "pure")
            && group.get("externalMu").is_none_or(|v| v == false);
        if !internal {
            skipped += tests(group).len();
            continue;
        }
        let deterministic = group["deterministic"].as_bool().expect("deterministic");
        for case in tests(group) {
            let sk = hex(case, "sk");
            #[allow(deprecated)]
            let key = ml_dsa::ExpandedSigningKey::<MlDsa65>::from_expanded(
                &ExpandedSigningKeyBytes::<MlDsa65>::try_from(sk.as_slice()).unwrap(),
            );
            let rnd = if deterministic {
                vec![0; 32]
            } else {
                hex(case, "rnd")
            };
            let message = hex(case, "message");
            let sig = key.sign_internal(&[&message], rnd.as_slice().try_into().unwrap());
            assert_eq!(
                sig.encode().as_slice(),
                hex(case, "signature"),
                "tcId {}",
                case["tcId"]
            );
            ran += 1;
        }
    }
    eprintln!("ML-DSA-65 sigGen: skipped {skipped} non-internal cases");
    report("ML-DSA-65 sigGen (internal)", ran);
}

#[test]
fn ml_dsa_65_verification_matches_acvp() {
    let Some(doc) = load("ml-dsa/sig-ver.json") else {
        return;
    };
    let (mut ran, mut skipped, mut valid) = (0, 0, 0);
    for group in groups(&doc, "ML-DSA-65") {
        let external = group["signatureInterface"] == "external";
        if !absent_or(group, "preHash", "pure") || group["externalMu"] == true {
            skipped += tests(group).len();
            continue;
        }
        let pk = hex(group, "pk");
        let key = ml_dsa::VerifyingKey::<MlDsa65>::decode(
            &EncodedVerifyingKey::<MlDsa65>::try_from(pk.as_slice()).unwrap(),
        );
        for case in tests(group) {
            let expected = case["testPassed"].as_bool().expect("testPassed");
            let message = hex(case, "message");
            let verified = match ml_dsa::Signature::<MlDsa65>::try_from(&hex(case, "signature")[..])
            {
                Err(_) => false,
                Ok(sig) if external => {
                    key.verify_with_context(&message, &hex(case, "context"), &sig)
                }
                Ok(sig) => key.verify_internal(&message, &sig),
            };
            assert_eq!(
                verified, expected,
                "tcId {} ({})",
                case["tcId"], case["reason"]
            );
            ran += 1;
            valid += usize::from(expected);
        }
    }
    eprintln!("ML-DSA-65 sigVer: skipped {skipped} pre-hash or external-mu cases");
    report("ML-DSA-65 sigVer", ran);
    assert!(
        valid > 0 && valid < ran,
        "want both valid and invalid cases"
    );
}

#[test]
fn slh_dsa_shake_192s_keygen_matches_acvp_and_our_root_key() {
    let Some(doc) = load("slh-dsa/keyGen-internalProjection.json") else {
        return;
    };
    let mut ran = 0;
    for case in groups(&doc, "SLH-DSA-SHAKE-192s").flat_map(tests) {
        let (sk, pk) = (hex(case, "sk"), hex(case, "pk"));
        let id = &case["tcId"];
        let key = slh_dsa::SigningKey::<Shake192s>::slh_keygen_internal(
            &hex(case, "skSeed"),
            &hex(case, "skPrf"),
            &hex(case, "pkSeed"),
        );
        assert_eq!(key.to_bytes().as_slice(), sk, "tcId {id}");
        assert_eq!(key.as_ref().to_bytes().as_slice(), pk, "tcId {id}");

        let root = RootSigningKey::from_bytes(&sk).unwrap();
        assert_eq!(
            root.public_key().to_bytes(),
            pk,
            "tcId {id} (RootSigningKey)"
        );
        assert_eq!(root.to_bytes().as_slice(), sk, "tcId {id} (RootSigningKey)");
        ran += 1;
    }
    report("SLH-DSA-SHAKE-192s keyGen", ran);
}

#[test]
fn slh_dsa_shake_192s_internal_verification_matches_acvp() {
    let Some(doc) = load("slh-dsa/sigVer-internalProjection.json") else {
        return;
    };
    let (mut ran, mut valid) = (0, 0);
    for case in groups(&doc, "SLH-DSA-SHAKE-192s").flat_map(tests) {
        let expected = case["testPassed"].as_bool().expect("testPassed");
        let pk = hex(case, "pk");
        // Our parser accepts every public key of the file.
        RootPublicKey::from_bytes(&pk).unwrap();
        let key = slh_dsa::VerifyingKey::<Shake192s>::try_from(pk.as_slice()).unwrap();
        let verified = match slh_dsa::Signature::<Shake192s>::try_from(&hex(case, "signature")[..])
        {
            Err(_) => false,
            Ok(sig) => key
                .slh_verify_internal(&[&hex(case, "message")], &sig)
                .is_ok(),
        };
        assert_eq!(
            verified, expected,
            "tcId {} ({})",
            case["tcId"], case["reason"]
        );
        ran += 1;
        valid += usize::from(expected);
    }
    report("SLH-DSA-SHAKE-192s sigVer", ran);
    assert!(
        valid > 0 && valid < ran,
        "want both valid and invalid cases"
    );
}

#[test]
fn x_wing_vectors_match_and_our_sealing_key_is_x_wing() {
    let Some(doc) = load("x-wing/test-vectors.json") else {
        return;
    };
    let mut ran = 0;
    for case in doc.as_array().expect("a JSON array") {
        let seed: [u8; 32] = hex(case, "seed").try_into().unwrap();
        let (pk, ct, ss) = (hex(case, "pk"), hex(case, "ct"), hex(case, "ss"));
        assert_eq!(hex(case, "sk"), seed, "the secret key is the seed");

        let dk = x_wing::DecapsulationKey::from(seed);
        let ek = dk.encapsulation_key();
        assert_eq!(x_wing::KeyExport::to_bytes(ek).as_slice(), pk);
        let eseed: [u8; 64] = hex(case, "eseed").try_into().unwrap();
        let (got_ct, got_ss) = ek.encapsulate_deterministic(&eseed.into());
        assert_eq!(got_ct.as_slice(), ct);
        assert_eq!(got_ss.as_slice(), ss);
        assert_eq!(
            x_wing::Decapsulate::decapsulate_slice(&dk, &ct)
                .unwrap()
                .as_slice(),
            ss
        );

        let ours = SealingKey::from_seed(&seed);
        assert_eq!(ours.public_key(), pk, "SealingKey's public key is X-Wing's");
        ran += 1;
    }
    report("X-Wing", ran);
}

#[test]
fn ml_dsa_65_same_seed_gives_same_key_in_rustcrypto_and_aws_lc() {
    for seed in [[0u8; 32], [0x5a; 32], core::array::from_fn(|i| i as u8)] {
        let rust = ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed.into());
        let aws = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seed).unwrap();
        let rust_pk = rust.expanded_key().verifying_key().encode();
        assert_eq!(rust_pk.as_slice(), aws.public_key().as_ref());
    }
}

#[test]
fn ml_dsa_65_signatures_interoperate_between_aws_lc_and_rustcrypto() {
    let message = b"dwcp interop";
    let aws = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).unwrap();
    let pk = aws.public_key().as_ref().to_vec();

    // aws-lc-rs signs (pure ML-DSA, empty context); RustCrypto verifies.
    let mut sig = vec![0; ML_DSA_65_SIGNING.signature_len()];
    let len = aws.sign(message, &mut sig).unwrap();
    let vk = ml_dsa::VerifyingKey::<MlDsa65>::decode(
        &EncodedVerifyingKey::<MlDsa65>::try_from(pk.as_slice()).unwrap(),
    );
    let parsed = ml_dsa::Signature::<MlDsa65>::try_from(&sig[..len]).unwrap();
    assert!(vk.verify_with_context(message, b"", &parsed));
    assert!(!vk.verify_with_context(b"another message", b"", &parsed));

    // RustCrypto signs; aws-lc-rs verifies.
    let mut seed = [0u8; 32];
    dwcp_crypto::random_bytes(&mut seed).unwrap();
    let rust = ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed.into());
    let sig = rust
        .expanded_key()
        .sign_deterministic(message, b"")
        .unwrap()
        .encode();
    let rust_pk = rust.expanded_key().verifying_key().encode();
    let aws_vk = UnparsedPublicKey::new(&ML_DSA_65, rust_pk.as_slice());
    aws_vk.verify(message, &sig).unwrap();
    assert!(aws_vk.verify(b"another message", &sig).is_err());
}

#[test]
fn ml_kem_768_encapsulations_interoperate_between_aws_lc_and_rustcrypto() {
    use aws_lc_rs::kem::{DecapsulationKey, EncapsulationKey, ML_KEM_768};

    // aws-lc-rs encapsulates to a RustCrypto key.
    let mut seed = [0u8; 64];
    dwcp_crypto::random_bytes(&mut seed).unwrap();
    let rust = ml_kem_768::DecapsulationKey::from_seed(seed.into());
    let ek_bytes = rust.encapsulation_key().to_bytes();
    let aws_ek = EncapsulationKey::new(&ML_KEM_768, &ek_bytes).unwrap();
    let (ct, ss) = aws_ek.encapsulate().unwrap();
    assert_eq!(
        rust.decapsulate_slice(ct.as_ref()).unwrap().as_slice(),
        ss.as_ref()
    );

    // RustCrypto encapsulates to an aws-lc-rs key.
    let aws_dk = DecapsulationKey::generate(&ML_KEM_768).unwrap();
    let aws_ek_bytes = aws_dk.encapsulation_key().unwrap().key_bytes().unwrap();
    let rust_ek =
        ml_kem_768::EncapsulationKey::new(aws_ek_bytes.as_ref().try_into().unwrap()).unwrap();
    let mut m = [0u8; 32];
    dwcp_crypto::random_bytes(&mut m).unwrap();
    let (ct, ss) = rust_ek.encapsulate_deterministic(&m.into());
    let shared = aws_dk.decapsulate(ct.as_slice().into()).unwrap();
    assert_eq!(shared.as_ref(), ss.as_slice());
}

/// RFC 8032 section 7.1, TEST 1 and TEST 2: (secret key, public key, message, signature).
const ED25519_RFC8032: [(&str, &str, &str, &str); 2] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
];

#[test]
fn ed25519_matches_rfc8032_test_1_and_2() {
    for (sk, pk, message, sig) in ED25519_RFC8032 {
        let (sk, pk) = (hex::decode(sk).unwrap(), hex::decode(pk).unwrap());
        let (message, sig) = (hex::decode(message).unwrap(), hex::decode(sig).unwrap());
        let key = Ed25519KeyPair::from_seed_unchecked(&sk).unwrap();
        assert_eq!(key.public_key().as_ref(), pk);
        assert_eq!(key.sign(&message).as_ref(), sig);
        UnparsedPublicKey::new(&ED25519, &pk)
            .verify(&message, &sig)
            .unwrap();
    }
}

/// Our composite key's halves are the plain ML-DSA-65 and Ed25519 keys of
/// its seeds, and its signatures verify only for their own context.
#[test]
fn composite_key_is_ml_dsa_65_then_ed25519_and_signatures_verify() {
    let mut seeds = [0x42u8; 64];
    seeds[32..].copy_from_slice(&hex::decode(ED25519_RFC8032[0].0).unwrap());
    let key = HybridSigningKey::from_seeds(&seeds);
    let public = key.public_key().as_bytes();
    let mldsa = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seeds[..32]).unwrap();
    assert_eq!(&public[..1952], mldsa.public_key().as_ref());
    assert_eq!(hex::encode(&public[1952..]), ED25519_RFC8032[0].1);

    let sig = key.sign(b"artifact", b"dwcp/artifact/v1").unwrap();
    key.public_key()
        .verify(b"artifact", b"dwcp/artifact/v1", &sig)
        .unwrap();
    assert!(
        key.public_key()
            .verify(b"artifact", b"dwcp/key-endorse/v1", &sig)
            .is_err()
    );
    assert!(
        key.public_key()
            .verify(b"artifacT", b"dwcp/artifact/v1", &sig)
            .is_err()
    );
}
