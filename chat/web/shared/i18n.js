// Chinese or English from the browser's language (PROTOCOL 9), shared by the widget and the console.
// Bundling convention (chat/web/bundle.py): named imports, `export` only on declarations.

/** "zh" when the browser's preferred language is a Chinese one, else "en". */
export function pickLanguage(languages = navigator.languages || [navigator.language]) {
  for (const tag of languages) {
    const lower = String(tag || "").toLowerCase();
    if (lower.startsWith("zh")) return "zh";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

/** A lookup function over `{en: {...}, zh: {...}}`: t("key", {name: "x"}) fills `{name}`; a key
 * missing in the chosen language falls back to English, then to the key itself. */
export function translator(strings, language = pickLanguage()) {
  const table = strings[language] || strings.en;
  const t = (key, vars = {}) => {
    const text = key in table ? table[key] : key in strings.en ? strings.en[key] : key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  };
  t.language = language;
  return t;
}
