"""Access code pairs beyond create: the list, one pair by its href (GET, added with the route table
of issue 15 as the example of a new route), revocation; never a secret after creation."""

import os
import unittest

import harness
import opentoken_client as oc


class AccessCodesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()
        spool = os.path.join(cls.d.dir, "mail")
        cls.alice = oc.logged_in_user(cls.d, spool, "codes-alice@example.com")
        cls.bob = oc.logged_in_user(cls.d, spool, "codes-bob@example.com")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def test_one_pair_by_its_href(self):
        base = f"/account/{self.alice.account_id}/accessCode"
        created = self.alice.req("POST", base, {"description": "ci"})
        self.assertEqual(created.status, 201, created.body)
        pair = created.json()
        listed = self.alice.req("GET", base).json()["items"]
        href = next(i["href"] for i in listed if i["code"] == pair["code"])
        self.assertEqual(href, created.header("Location"))
        one = self.alice.req("GET", href)
        self.assertEqual(one.status, 200, one.body)
        doc = one.json()
        self.assertEqual((doc["code"], doc["description"], doc["expires"]),
                         (pair["code"], "ci", pair["expires"]))
        self.assertNotIn("secret", doc)
        self.assertNotIn(pair["secret"].encode(), one.body)
        oc.find_link(one, rel="self")
        # Unknown, another account's, no credential.
        self.assertEqual(self.alice.req("GET", base + "/nosuchcode").status, 404)
        self.assertEqual(self.bob.req("GET", href).status, 403)
        self.assertEqual(self.d.request("GET", href).status, 401)
        # Revoked: gone.
        self.assertEqual(self.alice.req("DELETE", href).status, 204)
        self.assertEqual(self.alice.req("GET", href).status, 404)


if __name__ == "__main__":
    unittest.main()
