// Client-side helpers: mirror app state in the address bar without reloading the page.
(function () {
  const GLOBAL_KEYS = ["dataset", "tumor_type", "treatment", "cohort", "timepoint", "response"];
  // Page keys that mean the same on every page (NK metric, response definition): the
  // navigation links carry them from the address bar, so a metric chosen on one page
  // is kept on the next.
  const SHARED_PAGE_KEYS = ["metric", "definition"];

  // Last nav paths and filter seen by the navHrefs callback, so the links can be
  // refreshed whenever a page rewrites the address bar (no Dash input fires then).
  let navPaths = [];
  let navFilter = null;

  function toParams(state, params) {
    Object.keys(state || {}).forEach(function (key) {
      params.delete(key);
      const value = state[key];
      if (value === null || value === undefined || value === "") return;
      (Array.isArray(value) ? value : [value]).forEach(function (v) {
        if (v !== null && v !== undefined && v !== "") params.append(key, String(v));
      });
    });
    return params;
  }

  function globalQuery(filter) {
    const state = {};
    GLOBAL_KEYS.forEach(function (k) { state[k] = filter ? filter[k] : null; });
    return toParams(state, new URLSearchParams()).toString();
  }

  // Query of the nav links: the global filter, then the shared page keys as the
  // address bar holds them now.
  function navQuery(filter) {
    const current = new URLSearchParams(window.location.search);
    const params = new URLSearchParams();
    GLOBAL_KEYS.forEach(function (k) {
      const values = filter ? filter[k] : current.getAll(k);
      toParams({ [k]: values }, params);
    });
    SHARED_PAGE_KEYS.forEach(function (k) {
      current.getAll(k).forEach(function (v) { if (v) params.append(k, v); });
    });
    return params.toString();
  }

  function navHrefs(filter, paths) {
    const query = navQuery(filter);
    return (paths || []).map(function (p) { return p + (query ? "?" + query : ""); });
  }

  function refreshNav() {
    const setProps = window.dash_clientside && window.dash_clientside.set_props;
    if (!setProps || !navPaths.length) return;
    const hrefs = navHrefs(navFilter, navPaths);
    navPaths.forEach(function (path, i) {
      setProps({ type: "nav-link", path: path }, { href: hrefs[i] });
    });
  }

  // Merge `state` (key -> value or list; null removes) into the current query string.
  function setQuery(state) {
    const params = toParams(state, new URLSearchParams(window.location.search));
    const query = params.toString();
    const url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
    if (url !== window.location.pathname + window.location.search + window.location.hash) {
      window.history.replaceState(window.history.state, "", url);
      refreshNav();
    }
  }
  window.icbSetQuery = setQuery;

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    icb: {
      syncFilterToUrl: function (filter) {
        if (!filter) return window.dash_clientside.no_update;
        const state = {};
        GLOBAL_KEYS.forEach(function (k) { state[k] = filter[k]; });
        navFilter = filter;
        setQuery(state);
        return globalQuery(filter);
      },
      navHrefs: function (filter, paths) {
        navPaths = paths || [];
        if (filter) navFilter = filter;
        return navHrefs(navFilter, navPaths);
      },
      setQuery: function (state) {
        setQuery(state);
        return window.dash_clientside.no_update;
      },
    },
  });
})();
