# Included by scripts/setup-ros.sh (-DCMAKE_PROJECT_INCLUDE=...) when the ROS 2 underlay is
# the ros-jazzy-* wheels from PyPI rather than a ROS install.
#
# Those wheels were built in a manylinux container and their exported CMake targets
# (<pkg>::<pkg>__rosidl_generator_py) name that container's Python and numpy include folders,
# /opt/python/cp3XX-cp3XX/...; CMake refuses imported targets whose include folders do not exist.
# At the end of the configure step (after every find_package), this rewrites those entries to
# the include folders of the interpreter doing the build, so nothing needs to exist under /opt.
cmake_minimum_required(VERSION 3.19)

function(_pip_ros_fix_python_includes)
  if(NOT Python3_EXECUTABLE)
    message(FATAL_ERROR "pip_ros_paths.cmake: set -DPython3_EXECUTABLE=<venv>/bin/python")
  endif()
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import sysconfig, numpy; print(sysconfig.get_paths()['include'] + ';' + numpy.get_include())"
    OUTPUT_VARIABLE _includes OUTPUT_STRIP_TRAILING_WHITESPACE
    COMMAND_ERROR_IS_FATAL ANY)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs AND "${_dirs}" MATCHES "/opt/python/cp[0-9]+-cp[0-9]+/")
      list(FILTER _dirs EXCLUDE REGEX "^/opt/python/cp[0-9]+-cp[0-9]+/")
      list(APPEND _dirs ${_includes})
      list(REMOVE_DUPLICATES _dirs)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dirs}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _pip_ros_fix_python_includes)
