"""The balloon through the API, end to end (curl and skiffctl against a real
skiff): vm.create with a BalloonConfig, vm.resize desired_balloon, vm.info,
and the errors. A VM that is created but not booted needs no KVM, so most of
this runs anywhere; the running-VM case (balloon0 in vm.counters, the
target reaching the device) needs /dev/kvm and skips without it.
"""
import json
import subprocess
import unittest

from test_api import SKIFFCTL, Skiff, guest, need_kvm

RAM = 256 << 20


def config(balloon=None, kernel="/nonexistent/kernel"):
    c = {"payload": {"kernel": kernel}, "memory": {"size": RAM}}
    if balloon is not None:
        c["balloon"] = balloon
    return json.dumps(c)


class BalloonApi(unittest.TestCase):
    def setUp(self):
        self.skiff = Skiff()
        self.addCleanup(self.skiff.close)

    def resize(self, body):
        return self.skiff.curl("PUT", "vm.resize", json.dumps(body))

    def assertStatus(self, result, status, word=None):
        s, j, _ = result
        self.assertEqual(s, status, f"{result}")
        if word:
            self.assertIn(word, j["message"])

    def test_resize_before_boot_changes_the_configured_size(self):
        self.assertStatus(self.resize({"desired_balloon": 4096}), 404)
        self.assertEqual(self.skiff.curl("PUT", "vm.create", config({"size": 0}))[0], 204)
        self.assertStatus(self.resize({"desired_balloon": 64 << 20}), 204)
        s, info, _ = self.skiff.curl("GET", "vm.info")
        self.assertEqual(info["config"]["balloon"]["size"], 64 << 20)
        self.assertEqual(info["memory_actual_size"], RAM, "nothing is inflated before boot")

    def test_resize_errors(self):
        self.skiff.curl("PUT", "vm.create", config({"size": 0, "deflate_on_oom": True}))
        self.assertStatus(self.resize({"desired_balloon": RAM + 4096}), 400, "larger than guest RAM")
        self.assertStatus(self.resize({"desired_balloon": -1}), 400, "desired_balloon")
        self.assertStatus(self.resize({}), 400, "desired_balloon")
        self.assertStatus(self.resize({"desired_ram": 1 << 30}), 501, "desired_ram")
        self.assertStatus(self.resize({"desired_vcpus": 2}), 501, "desired_vcpus")

    def test_no_balloon_no_resize(self):
        self.skiff.curl("PUT", "vm.create", config())
        self.assertStatus(self.resize({"desired_balloon": 4096}), 400, "no balloon")
        s, info, _ = self.skiff.curl("GET", "vm.info")
        self.assertNotIn("balloon", info["config"])

    def test_bad_balloon_config_is_refused(self):
        self.assertStatus(self.skiff.curl("PUT", "vm.create", config({"size": RAM * 2})), 400,
                          "balloon.size")
        self.assertStatus(self.skiff.curl("PUT", "vm.create", config({})), 400, "balloon.size")

    def test_skiffctl_resize(self):
        self.skiff.curl("PUT", "vm.create", config({"size": 0}))
        ctl = [SKIFFCTL, "--api-socket", self.skiff.sock]
        p = subprocess.run(ctl + ["resize", "--balloon", "32M"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.skiff.curl("GET", "vm.info")[1]["config"]["balloon"]["size"], 32 << 20)
        p = subprocess.run(ctl + ["resize", "--balloon", "1G"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("larger than guest RAM", p.stderr)
        p = subprocess.run(ctl + ["resize"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run(ctl + ["resize", "--balloon", "lots"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("lots", p.stderr)
        p = subprocess.run(ctl + ["info", "--balloon", "1M"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)

    def test_running_vm_target_reaches_the_device(self):
        need_kvm()
        cfg = json.loads(config({"size": 8 << 20}, kernel=guest("ring3_loop")))
        cfg["payload"]["cmdline"] = "iters=400000000000"
        self.assertEqual(self.skiff.curl("PUT", "vm.create", json.dumps(cfg))[0], 204)
        self.assertEqual(self.skiff.curl("PUT", "vm.boot")[0], 204)
        c = self.skiff.curl("GET", "vm.counters")[1]
        self.assertEqual(c["balloon0"]["target_bytes"], 8 << 20)
        self.assertStatus(self.resize({"desired_balloon": 32 << 20}), 204)
        c = self.skiff.curl("GET", "vm.counters")[1]
        self.assertEqual(c["balloon0"]["target_bytes"], 32 << 20)
        # ring3_loop has no balloon driver: the balloon stays empty.
        self.assertEqual(c["balloon0"]["actual_bytes"], 0)
        self.assertEqual(self.skiff.curl("GET", "vm.info")[1]["memory_actual_size"], RAM)
        self.skiff.curl("PUT", "vm.pause")
        self.assertStatus(self.resize({"desired_balloon": 0}), 204)


if __name__ == "__main__":
    unittest.main()
