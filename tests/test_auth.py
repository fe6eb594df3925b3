from snakeweb.auth import check_reviewer, hash_password, verify_password


def test_hash_and_verify():
    encoded = hash_password("correct horse", iterations=1000)
    assert encoded.startswith("pbkdf2_sha256$1000$") and "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("wrong", encoded)
    assert not verify_password("correct horse", "garbage")
    assert hash_password("x", iterations=1000) != hash_password("x", iterations=1000)  # salted


def test_check_reviewer():
    reviewers = {"ana": hash_password("pw-ana", iterations=1000)}
    assert check_reviewer(reviewers, "ana", "pw-ana")
    assert not check_reviewer(reviewers, "ana", "pw-bob")
    assert not check_reviewer(reviewers, "bob", "pw-ana")
