// One way to build DOM nodes for every view: attributes are set with setAttribute and text goes
// in as text nodes, never as markup, so customer text (comments, touchpoint and agent names)
// cannot inject script (the CSP has no inline script either; tests/e2e/test_dashboard_xss.py).
// null, undefined and false leave an attribute or a child out; true sets an empty attribute
// (hidden, required); an `on...` attribute adds a listener.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
