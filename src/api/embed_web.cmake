# Embeds the dashboard's sources (web/*) into the binary: run at build time as
#   cmake -DWEB_DIR=<dir> -DOUTPUT=<file.cc> -P embed_web.cmake
# It writes a .cc defining drover::api::embeddedAssets() (api/dashboard.h): one byte array per
# file of WEB_DIR (top level only, sorted by name), each followed by a NUL that is not counted in
# its size. The build reruns it when a file of web/ changes (see CMakeLists.txt).
if(NOT WEB_DIR OR NOT OUTPUT)
  message(FATAL_ERROR "embed_web.cmake: WEB_DIR and OUTPUT are required")
endif()

file(GLOB files LIST_DIRECTORIES false RELATIVE ${WEB_DIR} ${WEB_DIR}/*)
list(SORT files)
set(arrays "")
set(table "")
set(index 0)
# CMake's regular expressions have no {n}: spell out the 16 bytes of one line.
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 row)
foreach(name IN LISTS files)
  if(NOT name MATCHES "^[A-Za-z0-9._-]+$" OR name MATCHES "^\\.")
    continue()  # hidden files (editor droppings) and odd names are not served
  endif()
  file(READ ${WEB_DIR}/${name} hex HEX)
  string(LENGTH "${hex}" hex_length)
  math(EXPR size "${hex_length} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # Break the initializer into lines of 16 bytes (80 characters) to keep the file readable.
  string(REGEX REPLACE "${row}" "\\0\n    " bytes "${bytes}")
  string(APPEND arrays "// ${name}\nconst unsigned char kAsset${index}[] = {\n    ${bytes}0x00};\n\n")
  string(APPEND table "      EmbeddedAsset{\"${name}\", std::string_view(reinterpret_cast<const char*>(kAsset${index}), ${size})},\n")
  math(EXPR index "${index} + 1")
endforeach()

set(content "// Generated from web/ by src/api/embed_web.cmake at build time. Do not edit.
#include <array>

#include \"api/dashboard.h\"

namespace drover::api {
namespace {

${arrays}}  // namespace

std::span<const EmbeddedAsset> embeddedAssets() {
  static const EmbeddedAsset kAssets[] = {
${table}      EmbeddedAsset{}};
  return std::span<const EmbeddedAsset>(kAssets, ${index});
}

}  // namespace drover::api
")
file(WRITE ${OUTPUT} "${content}")
