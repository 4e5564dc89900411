"""Issue 10, finding 5: a stolen database file, dump or backup reveals no personal data.

A thief is given what lies on the disk or in the object store without the
master keys: the SQLite file with its -wal and -shm, a plain pg_dump, and our
backup *after* decrypting it (as if its data key had leaked too). None of them
may hold a customer's e-mail, phone, address, billing information, comment body
or IP address. The API still answers with the plaintext (and GDPR export), and
DATA_DIR is the server user's only (0700, files 0600), also after a real run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
import subprocess
import tempfile
import zlib
from pathlib import Path

import httpx
import pytest

from storage.backup import make_backup
from storage.crypto import IntegrityError, KeyRing, WrappedKey, decrypt_bytes, unwrap
from storage.models import Comment, Invitation, Order, User
from storage.objects import LocalObjectStore
from storage.queries import find_user_by_email
from storage.sealed_fields import SealedModel
from tests.conftest import BACKEND
from tests.helpers import PASSWORD, Api, box_stl, wait_analysed
from tests.server_process import start_server

EMAIL = f"Pii.Leak-{secrets.token_hex(4)}@Example.org"
PHONE = "+49 30 9876543"
STREET = "Geheimgasse 17"
CITY = "Quedlinburg"
BILLING = "IBAN DE02120300000000202051"
COMMENT = "Bitte diskret liefern, Tor hinten 5a9f"
IP = "203.0.113.7"  # the test client's address (tests/conftest.py serving)
COMPANY = "Leak-Check GmbH"  # not personal, stays plaintext: the search's control
ADDRESS = {"line1": STREET, "postalCode": "06484", "city": CITY, "country": "DE"}
FIRST, LAST = "Leandrina", "Leakmannsdottir"
NEEDLES = [EMAIL, EMAIL.lower(), PHONE, STREET, CITY, BILLING, COMMENT, IP, FIRST, LAST]

SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id } } }"
COMMENT_ON = "mutation($m: ID!, $b: String!) { addComment(modelId: $m, body: $b) { id } }"
ORDER = """mutation($i: OrderInput!) { requestOrder(input: $i) { id billingInfo
  shippingAddress { line1 city } } }"""


async def _fill(api: Api) -> str:
    """A customer with everything personal the platform keeps, through the API."""
    data = {
        "email": EMAIL,
        "password": PASSWORD,
        "firstName": FIRST,
        "lastName": LAST,
        "companyName": COMPANY,
        "phone": PHONE,
        "address": ADDRESS,
    }
    token = (await api.ok(SIGN_UP, {"i": data}))["signUp"]["token"]
    uploaded = await api.upload(box_stl(), "part.stl", token)
    model_id = uploaded.json()["data"]["uploadModel"]["id"]
    await api.ok(COMMENT_ON, {"m": model_id, "b": COMMENT}, token)
    await wait_analysed(model_id)  # an order needs a DONE analysis (NOT_PRINTABLE otherwise)
    order = {
        "modelId": model_id,
        "quantity": 1,
        "material": "PETG",
        "shippingAddress": ADDRESS,
        "billingAddress": ADDRESS,
        "billingInfo": BILLING,
    }
    placed = (await api.ok(ORDER, {"i": order}, token))["requestOrder"]
    assert placed["billingInfo"] == BILLING and placed["shippingAddress"]["line1"] == STREET
    return token


def _leaks(raw: bytes) -> list[str]:
    return [needle for needle in NEEDLES if needle.encode() in raw]


async def _stolen_database(database: str) -> bytes:
    """What a thief with the database but not MASTER_KEYS reads."""
    if database.startswith("sqlite://"):
        path = Path(database.removeprefix("sqlite://"))
        files = [str(path), f"{path}-wal", f"{path}-shm"]
        # Read by another process: closing any descriptor of these files in this one
        # drops this process's POSIX locks on them (SQLite's known pitfall), and the
        # next server process to close its connection then deletes the -wal under the
        # suite's open connection, whose later writes no other process sees.
        stolen = await asyncio.to_thread(
            # cat reads what exists; a missing -wal/-shm only makes it exit 1.
            subprocess.run, ["cat", *files], capture_output=True, check=False, timeout=60,
        )
        return stolen.stdout
    dump = await asyncio.to_thread(
        subprocess.run,
        ["pg_dump", "--no-owner", "--format=plain", database],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return dump.stdout


async def test_a_stolen_database_reveals_no_personal_data(api: Api, database: str) -> None:
    token = await _fill(api)
    raw = await _stolen_database(database)
    assert COMPANY.encode() in raw  # the control: the search does find plaintext
    assert _leaks(raw) == []

    # The API still answers with the plaintext, and so does the GDPR export.
    me = await api.ok("{ me { email firstName phone address { line1 city } } }", token=token)
    assert me["me"] == {
        "email": EMAIL.lower(),
        "firstName": FIRST,
        "phone": PHONE,
        "address": {"line1": STREET, "city": CITY},
    }
    exported = (await api.ok("mutation { exportMyData }", token=token))["exportMyData"]
    assert all(needle in exported for needle in (EMAIL.lower(), PHONE, STREET, BILLING, COMMENT, IP))


async def test_a_decrypted_backup_reveals_no_personal_data(
    api: Api, database: str, tmp_path: Path
) -> None:
    await _fill(api)
    store = LocalObjectStore(tmp_path / "backups")
    ring = KeyRing({"b1": secrets.token_bytes(32)}, "b1")
    key = await make_backup(database, store, ring)
    sealed_file = next(path for path in (tmp_path / "backups").rglob("*") if path.is_file())
    raw = sealed_file.read_bytes()
    line, _, sealed = raw.partition(b"\n")
    header = json.loads(line)
    payload = decrypt_bytes(
        sealed, unwrap(ring, WrappedKey.from_str(header["wrapped_key"])), key.encode() + b"\n" + line
    )
    if BACKEND == "sqlite":
        content = zlib.decompress(payload)
    else:  # pg_dump's custom format, compressed: turned into SQL text
        with tempfile.NamedTemporaryFile(suffix=".dump") as dump:
            dump.write(payload)
            dump.flush()
            restored = await asyncio.to_thread(
                subprocess.run,
                ["pg_restore", "--file=-", dump.name],
                capture_output=True,
                check=True,
                timeout=120,
            )
            content = restored.stdout
    assert COMPANY.encode() in content  # the control
    assert _leaks(content) == []


async def test_email_found_by_blind_index_only(api: Api, database: str) -> None:
    await _fill(api)
    user = await find_user_by_email("  " + EMAIL.upper() + " ")  # case and spaces do not matter
    assert user is not None and user.email == EMAIL.lower()
    assert user.email_index != EMAIL.lower() and len(user.email_index) == 64
    # Sign-up with the same address in another spelling is refused (uniqueness).
    data = {"email": EMAIL.upper(), "password": PASSWORD, "firstName": "A", "lastName": "B",
            "companyName": "X", "address": ADDRESS}
    assert await api.error_code(SIGN_UP, {"i": data}) == "BAD_USER_INPUT"
    assert await User.filter(email_index=user.email_index).count() == 1


async def test_a_value_moved_to_another_row_does_not_open(api: Api, database: str) -> None:
    """Associated data binds each value to its table, column and row."""
    await _fill(api)
    victim = await find_user_by_email(EMAIL)
    assert victim is not None
    other = await api.customer()
    stored = await User.filter(id=victim.id).values_list("phone", flat=True)
    # An attacker with write access copies the victim's sealed phone onto their own row...
    await User.filter(id=other.user.id).update(phone=stored[0])
    with pytest.raises(IntegrityError):
        await User.get(id=other.user.id)
    # ...or into another column of the victim's own row.
    await User.filter(id=victim.id).update(signup_ip=stored[0])
    with pytest.raises(IntegrityError):
        await User.get(id=victim.id)


async def test_sealed_columns_refuse_plaintext_bulk_writes(database: str) -> None:
    """A bulk update cannot bind a value to its row: it must go through an instance."""
    with pytest.raises(TypeError):
        await Comment.all().update(body="plaintext")
    with pytest.raises(TypeError):
        await Invitation.filter(email="someone@example.com").count()
    assert issubclass(Order, SealedModel)


# --- DATA_DIR modes after a real server run -------------------------------------------


def _loose(root: Path) -> list[str]:
    """Everything under root (root included) that others could read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode & ~wanted:
            found.append(f"{path.relative_to(root)}: {oct(mode)}")
    return found


@pytest.mark.skipif(BACKEND != "sqlite", reason="the embedded default's files (SQLite)")
def test_data_dir_is_private_after_a_real_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # As an older version left it: world-readable directory and files.
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)  # noqa: S103 (the loose mode the server must tighten)
    old = data_dir / "left-over.txt"
    old.write_text("x")
    os.chmod(old, 0o644)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "STORAGE_URL", "MASTER_KEYS", "SECRET_KEY")
    }
    env["DATA_DIR"] = str(data_dir)
    previous = os.umask(0o022)  # the usual umask; the server must not depend on it
    try:
        process, port = start_server(env, tmp_path / "server.log")
    finally:
        os.umask(previous)
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        address = f"modes-{secrets.token_hex(4)}@example.com"
        data = {"email": address, "password": PASSWORD, "phone": PHONE,
                "firstName": "M", "lastName": "O", "companyName": COMPANY, "address": ADDRESS}
        answer = httpx.post(url, json={"query": SIGN_UP, "variables": {"i": data}}, timeout=60)
        token = answer.json()["data"]["signUp"]["token"]
        operations = {"query": "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
                      "variables": {"f": None}}
        uploaded = httpx.post(
            url,
            headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "1"},
            files={
                "operations": (None, json.dumps(operations), "application/json"),
                "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
                "0": ("part.stl", box_stl(), "application/octet-stream"),
            },
            timeout=60,
        )
        assert "errors" not in uploaded.json(), uploaded.text
        names = {path.name for path in data_dir.rglob("*")}
        # While it runs: the database with its journal files, an object, the keys.
        assert {"printvault.sqlite3", "printvault.sqlite3-wal", "printvault.sqlite3-shm"} <= names
        assert any((data_dir / "objects").rglob("*")) and any((data_dir / "keys").iterdir())
        assert _loose(data_dir) == []
        # The production path seals too (keys generated into DATA_DIR/keys).
        database = data_dir / "printvault.sqlite3"
        raw = b"".join(Path(f"{database}{end}").read_bytes() for end in ("", "-wal", "-shm"))
        assert COMPANY.encode() in raw
        assert [n for n in (address, PHONE, STREET, CITY) if n.encode() in raw] == []
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert _loose(data_dir) == []
