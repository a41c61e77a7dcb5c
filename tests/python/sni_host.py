"""A StatusNotifierWatcher and a notification server (org.freedesktop.Notifications) for the
test session bus (Debian has neither short of a desktop), plus a line-oriented control for the
tests, using dbus-next.

The app's tray (libayatana-appindicator) registers its StatusNotifierItem here. Commands on
stdin, one JSON answer per line on stdout:

  items                -> {"items": ["<bus name><object path>", ...]}
  menu                 -> {"labels": [...], "enabled": [...]}      (com.canonical.dbusmenu GetLayout)
  click <label>        -> {"clicked": <id>}                        (Event(id, "clicked", int32 0, 0))
  icon                 -> {"icon_name": ..., "title": ..., "tooltip": ...}
  notifications        -> {"notifications": [{"app_name", "summary", "body"}, ...]}  (every Notify call)
"""
import asyncio
import json
import sys

from dbus_next import BusType, Variant
from dbus_next.aio import MessageBus
from dbus_next.service import ServiceInterface, dbus_property, method, signal, PropertyAccess

WATCHER = "org.kde.StatusNotifierWatcher"


class Watcher(ServiceInterface):
    def __init__(self):
        super().__init__(WATCHER)
        self.items = []

    @method()
    def RegisterStatusNotifierItem(self, service: "s"):
        self._sender_hint = service
        self.items.append(service)
        self.StatusNotifierItemRegistered(service)

    @method()
    def RegisterStatusNotifierHost(self, service: "s"):
        pass

    @signal()
    def StatusNotifierItemRegistered(self, service) -> "s":
        return service

    @signal()
    def StatusNotifierHostRegistered(self) -> "":
        return None

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> "as":
        return self.items

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> "b":
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> "i":
        return 0


class Notifications(ServiceInterface):
    """The Desktop Notifications Specification's server side: records every Notify call."""

    def __init__(self):
        super().__init__("org.freedesktop.Notifications")
        self.received = []

    @method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s", body: "s",
               actions: "as", hints: "a{sv}", expire_timeout: "i") -> "u":
        self.received.append({"app_name": app_name, "summary": summary, "body": body})
        return len(self.received)

    @method()
    def GetCapabilities(self) -> "as":
        return ["body"]

    @method()
    def GetServerInformation(self) -> "ssss":
        return ["hostpulse-test", "hostpulse", "1", "1.2"]

    @method()
    def CloseNotification(self, id: "u"):
        pass

    @signal()
    def NotificationClosed(self) -> "uu":
        return [0, 0]

    @signal()
    def ActionInvoked(self) -> "us":
        return [0, ""]


def split(item):
    # Items register as a bus name (path /StatusNotifierItem) or as an object path (sender's name).
    if item.startswith("/"):
        return None, item
    if "/" in item:
        name, path = item.split("/", 1)
        return name, "/" + path
    return item, "/StatusNotifierItem"


async def main():
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    watcher = Watcher()
    senders = {}

    def on_message(msg):
        if msg.member == "RegisterStatusNotifierItem" and msg.interface == WATCHER:
            senders[msg.body[0]] = msg.sender
        return None

    bus.add_message_handler(on_message)
    bus.export("/StatusNotifierWatcher", watcher)
    await bus.request_name(WATCHER)
    notifications = Notifications()
    bus.export("/org/freedesktop/Notifications", notifications)
    await bus.request_name("org.freedesktop.Notifications")
    print(json.dumps({"ready": True}), flush=True)

    async def item_props():
        raw = watcher.items[-1]
        name, path = split(raw)
        name = name or senders.get(raw)
        intro = await bus.introspect(name, path)
        obj = bus.get_proxy_object(name, path, intro)
        return name, obj.get_interface("org.kde.StatusNotifierItem")

    async def menu_iface():
        name, item = await item_props()
        menu_path = await item.get_menu()
        intro = await bus.introspect(name, menu_path)
        return bus.get_proxy_object(name, menu_path, intro).get_interface("com.canonical.dbusmenu")

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line:
            break
        cmd, _, arg = line.partition(" ")
        try:
            if cmd == "items":
                out = {"items": watcher.items}
            elif cmd in ("menu", "click"):
                menu = await menu_iface()
                _, layout = await menu.call_get_layout(0, -1, [])
                entries = []
                for child in layout[2]:
                    cid, props, _ = child.value
                    label = props.get("label", Variant("s", "")).value
                    enabled = props.get("enabled", Variant("b", True)).value
                    entries.append((cid, label, enabled))
                if cmd == "menu":
                    out = {"labels": [e[1] for e in entries], "enabled": [e[2] for e in entries]}
                else:
                    match = [e for e in entries if e[1].replace("_", "") == arg]
                    if not match:
                        out = {"error": f"no menu item {arg!r} in {[e[1] for e in entries]}"}
                    else:
                        await menu.call_event(match[0][0], "clicked", Variant("i", 0), 0)
                        out = {"clicked": match[0][0]}
            elif cmd == "notifications":
                out = {"notifications": notifications.received}
            elif cmd == "icon":
                _, item = await item_props()
                out = {"icon_name": await item.get_icon_name(), "title": await item.get_title()}
                try:
                    out["tooltip"] = str(await item.get_tool_tip())
                except Exception as e:  # not every indicator exports a tooltip
                    out["tooltip"] = None
            else:
                out = {"error": f"unknown command {cmd!r}"}
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


asyncio.run(main())
