// PrintVault's GraphiQL page. A file of our own, not an inline script: the page's CSP
// runs only scripts that carry the response's nonce and has no 'unsafe-inline'.
"use strict";

(function () {
  // GraphiQL's dialogs lock page scrolling by adding a <style> element
  // (react-remove-scroll); it stamps that element with __webpack_nonce__, so the
  // style is allowed by the nonce instead of by 'unsafe-inline'.
  window.__webpack_nonce__ = document.currentScript.nonce;

  // GraphiQL keeps its tabs, queries and request headers in the storage it is
  // given, localStorage by default. A staff member's Authorization header must not
  // outlive the page, so it gets a storage that lives in memory only.
  function memoryStorage() {
    const items = new Map();
    return {
      get length() {
        return items.size;
      },
      key(index) {
        return Array.from(items.keys())[index] ?? null;
      },
      getItem(key) {
        return items.has(key) ? items.get(key) : null;
      },
      setItem(key, value) {
        items.set(key, String(value));
      },
      removeItem(key) {
        items.delete(key);
      },
      clear() {
        items.clear();
      },
    };
  }

  const endpoint = document.getElementById("graphiql").dataset.endpoint;
  const storage = memoryStorage(); // one object: GraphiQL re-reads it when it changes
  const fetcher = GraphiQL.createFetcher({ url: endpoint });
  const defaultQuery =
    "# PrintVault API. Put your token in Headers below:\n" +
    '#   {"Authorization": "Bearer <token>"}\n' +
    "# Headers are kept in this page only; reloading forgets them.\n\n" +
    "{\n  me {\n    email\n    role\n  }\n}\n";

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      storage: storage,
      defaultQuery: defaultQuery,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
    }),
  );
})();
