"""Asks about or closes the app's top-level X11 window by title, the way a window manager's close
button does (a WM_DELETE_WINDOW client message), under a bare Xvfb with no window manager.

  x11_window.py state <title>   -> prints "viewable", "unmapped" or "missing"
  x11_window.py close <title>   -> sends WM_DELETE_WINDOW to each window with that title
"""
import sys

from Xlib import X, display, protocol

cmd, title = sys.argv[1], sys.argv[2]
d = display.Display()
root = d.screen().root
delete = d.intern_atom("WM_DELETE_WINDOW")
protocols = d.intern_atom("WM_PROTOCOLS")


def windows(w):
    try:
        children = w.query_tree().children
    except Exception:
        return
    for c in children:
        yield c
        yield from windows(c)


found = [w for w in windows(root) if (w.get_wm_name() or "") == title]
if cmd == "state":
    states = [w.get_attributes().map_state for w in found]
    print("viewable" if X.IsViewable in states else ("unmapped" if states else "missing"))
elif cmd == "close":
    for w in found:
        ev = protocol.event.ClientMessage(window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0]))
        w.send_event(ev, event_mask=X.NoEventMask)
    d.flush()
    print(len(found))
