// Client-side helpers: mirror app state in the address bar without reloading the page.
(function () {
  const GLOBAL_KEYS = ["dataset", "tumor_type", "treatment", "cohort", "timepoint", "response"];

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

  // Merge `state` (key -> value or list; null removes) into the current query string.
  function setQuery(state) {
    const params = toParams(state, new URLSearchParams(window.location.search));
    const query = params.toString();
    const url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
    if (url !== window.location.pathname + window.location.search + window.location.hash) {
      window.history.replaceState(window.history.state, "", url);
    }
  }
  window.icbSetQuery = setQuery;

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    icb: {
      syncFilterToUrl: function (filter) {
        if (!filter) return window.dash_clientside.no_update;
        const state = {};
        GLOBAL_KEYS.forEach(function (k) { state[k] = filter[k]; });
        setQuery(state);
        return globalQuery(filter);
      },
      navHrefs: function (filter, paths) {
        const query = globalQuery(filter);
        return (paths || []).map(function (p) { return p + (query ? "?" + query : ""); });
      },
      setQuery: function (state) {
        setQuery(state);
        return window.dash_clientside.no_update;
      },
    },
  });
})();
