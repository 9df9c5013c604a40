# Embeds the OpenAPI document (src/api/openapi.json) into the binary: run at build time as
#   cmake -DINPUT=<openapi.json> -DOUTPUT=<file.cc> -P embed_openapi.cmake
# It writes a .cc defining drover::api::openApiDocument() (api/openapi.h) over a byte array of the
# file. The build reruns it when the file changes (see CMakeLists.txt).
if(NOT INPUT OR NOT OUTPUT)
  message(FATAL_ERROR "embed_openapi.cmake: INPUT and OUTPUT are required")
endif()
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 row)
string(REGEX REPLACE "${row}" "\\0\n    " bytes "${bytes}")
file(WRITE ${OUTPUT} "// Generated from src/api/openapi.json by src/api/embed_openapi.cmake. Do not edit.
#include \"api/openapi.h\"

namespace drover::api {
namespace {

const unsigned char kDocument[] = {
    ${bytes}0x00};

}  // namespace

std::string_view openApiDocument() {
  return std::string_view(reinterpret_cast<const char*>(kDocument), ${size});
}

}  // namespace drover::api
")
