from tests.helpers import ADDRESS, PASSWORD, Api, email

SIGN_UP = """
mutation($input: SignUpInput!) { signUp(input: $input) { token expiresAt user { id email company { name } } } }
"""


async def test_sign_up_and_me(api: Api) -> None:
    address = email("new")
    data = await api.ok(SIGN_UP, {"input": {"email": address.upper(), "password": PASSWORD,
        "firstName": "Ada", "lastName": "Lovelace", "companyName": "Acme", "address": ADDRESS}})
    token = data["signUp"]["token"]
    me = await api.ok("{ me { email company { name } } }", token=token)
    assert me["me"] == {"email": address, "company": {"name": "Acme"}}
