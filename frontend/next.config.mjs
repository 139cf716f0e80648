/** A static export the API serves (`PYSAAS_UI_DIR`): ids go in query strings, not routes. */
const config = {
  output: 'export',
  trailingSlash: true,
  images: { unoptimized: true },
  reactStrictMode: true,
};
export default config;
